//! nf_tables adapter (in progress).
