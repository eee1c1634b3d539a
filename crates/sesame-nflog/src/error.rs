//! Error type of the NFLOG adapter.

use std::io;

/// Everything that can go wrong while binding or reading an NFLOG group.
///
/// Note that a kernel-side queue overflow (`ENOBUFS`) is *not* an error: it is
/// reported as [`Received::Overrun`](crate::Received::Overrun).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NflogError {
    /// The configuration cannot be applied as given.
    #[error("invalid NFLOG configuration: {0}")]
    InvalidConfig(&'static str),

    /// Creating or binding the `NETLINK_NETFILTER` socket failed.
    #[error("cannot open a NETLINK_NETFILTER socket (is nfnetlink enabled in the kernel?): {0}")]
    Socket(#[source] io::Error),

    /// Neither `SO_RCVBUFFORCE` nor `SO_RCVBUF` could be set.
    #[error("cannot set the NFLOG socket receive buffer to {bytes} bytes: {source}")]
    RecvBuffer {
        /// Requested size.
        bytes: usize,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// Another netlink socket (normally another process: a second sesamed,
    /// ulogd, ...) owns the group.
    #[error("NFLOG group {group} is already bound by another process ({detail})")]
    GroupBusy {
        /// The group that was requested.
        group: u16,
        /// Errno returned by the kernel and, when known, the owner's netlink port id.
        detail: String,
    },

    /// The kernel refused the request for lack of privileges.
    #[error(
        "permission denied binding NFLOG group {group}: CAP_NET_ADMIN is required \
         in the network namespace of the socket"
    )]
    PermissionDenied {
        /// The group that was requested.
        group: u16,
    },

    /// The kernel rejected a configuration message.
    #[error("kernel rejected NFLOG {op} for group {group}: {source}")]
    Rejected {
        /// The group that was requested.
        group: u16,
        /// What was being configured.
        op: &'static str,
        /// The errno returned by the kernel.
        #[source]
        source: io::Error,
    },

    /// The kernel did not acknowledge a configuration message in time.
    #[error("kernel did not acknowledge NFLOG {op} for group {group} within {timeout_ms} ms")]
    NoAck {
        /// The group that was requested.
        group: u16,
        /// What was being configured.
        op: &'static str,
        /// How long we waited.
        timeout_ms: u64,
    },

    /// Sending a configuration message failed.
    #[error("cannot send NFLOG {op} for group {group}: {source}")]
    Send {
        /// The group that was requested.
        group: u16,
        /// What was being configured.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// Reading from the socket failed with something other than `EAGAIN`/`ENOBUFS`.
    #[error("receiving from NFLOG group {group} failed: {source}")]
    Recv {
        /// The bound group.
        group: u16,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
}
