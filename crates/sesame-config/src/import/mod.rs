//! Importers: knockd's and fwknop's configuration files, read with their
//! own meaning and turned into Sesame doors. They depend on the schema,
//! never the reverse.

pub mod fwknop;
pub mod knockd;
