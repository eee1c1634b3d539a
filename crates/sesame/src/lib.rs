//! Sesame application layer.
