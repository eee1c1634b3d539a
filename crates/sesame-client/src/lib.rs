//! Sesame's portable client: what `sesame knock` needs on any platform
//! people knock from.
//!
//! * [`knock`]: knock sequences (a TCP knock is one non-blocking connect, a
//!   UDP knock one datagram), name resolution by address family;
//! * [`profile`]: the client config (`~/.config/sesame/client.toml`):
//!   servers and their plain, TOTP, SPA and fwknop doors;
//! * [`fwknop`]: fwknop-format doors of a profile;
//! * [`reach`]: knock, confirm by connecting, knock again with backoff;
//!   keep the door open while a session lives (refresh, roaming);
//! * [`enroll`]: a device's whole SPA profile in one URI;
//! * [`plan`]: what to send for a door, made apart from sending it (the C
//!   ABI's base);
//! * [`keys`]: key files (`sesame keygen`), private from their creation;
//! * [`secure_file`]: the refusal of files others could change;
//! * [`located`]: how reading a file fails, the same for every reader.
//!
//! It holds no netlink and no Linux-only call outside `cfg(unix)` gates, so
//! it builds for Linux, macOS, Windows and Android (CI checks the last
//! three). The daemon (`sesamed`) and its adapters are not here.

#![forbid(unsafe_code)]

pub mod enroll;
pub mod fwknop;
pub mod keys;
pub mod knock;
pub mod located;
mod os;
pub mod plan;
pub mod profile;
pub mod reach;
pub mod secure_file;
