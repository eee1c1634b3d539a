//! TODO: filled in by the core work.
