//! The few places where the client needs the platform: Unix file modes and
//! owners, opening without blocking on FIFOs, and a non-blocking connect.
//! Elsewhere (Windows) files have no Unix mode or owner: key files are then
//! protected by the platform's ACLs, and the checks here pass.

use std::fs::{DirBuilder, Metadata, OpenOptions};
use std::io;

/// Permission bits (`& 0o7777`) and owner uid of a file, where the
/// platform has them.
#[cfg(unix)]
pub(crate) fn mode_and_owner(meta: &Metadata) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.mode() & 0o7777, meta.uid()))
}

/// Permission bits and owner: none on this platform.
#[cfg(not(unix))]
pub(crate) fn mode_and_owner(_meta: &Metadata) -> Option<(u32, u32)> {
    None
}

/// The effective uid (0 where there is none).
#[cfg(unix)]
pub(crate) fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The effective uid: none on this platform.
#[cfg(not(unix))]
pub(crate) fn effective_uid() -> u32 {
    0
}

/// Opening never blocks on a FIFO and never takes a controlling terminal.
#[cfg(unix)]
pub(crate) fn no_block_no_tty(options: &mut OpenOptions) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
}

/// No FIFOs or terminals to guard against on this platform.
#[cfg(not(unix))]
pub(crate) fn no_block_no_tty(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// New files get `mode` from their creation (no window in which they are
/// readable by others).
#[cfg(unix)]
pub(crate) fn create_mode(options: &mut OpenOptions, mode: u32) -> &mut OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    options.mode(mode)
}

/// New files inherit the folder's ACL on this platform.
#[cfg(not(unix))]
pub(crate) fn create_mode(options: &mut OpenOptions, _mode: u32) -> &mut OpenOptions {
    options
}

/// A non-blocking connect that has started (the SYN is out).
pub(crate) fn connect_in_progress(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(nix::libc::EINPROGRESS) {
        return true;
    }
    e.kind() == io::ErrorKind::WouldBlock
}

/// New folders get `mode` from their creation.
#[cfg(unix)]
pub(crate) fn dir_mode(builder: &mut DirBuilder, mode: u32) -> &mut DirBuilder {
    use std::os::unix::fs::DirBuilderExt;
    builder.mode(mode)
}

/// New folders inherit their parent's ACL on this platform.
#[cfg(not(unix))]
pub(crate) fn dir_mode(builder: &mut DirBuilder, _mode: u32) -> &mut DirBuilder {
    builder
}
