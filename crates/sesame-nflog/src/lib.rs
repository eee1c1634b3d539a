//! NFLOG adapter (in progress).
