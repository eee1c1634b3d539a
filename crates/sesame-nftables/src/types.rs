//! The plain types of the adapter's interface: what an install did, a
//! grant read back from the kernel, and the errors.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use nix::errno::Errno;
use sesame_core::Service;

/// Longest table name accepted (the kernel allows 255; shorter keeps logs sane).
pub const MAX_TABLE_NAME: usize = 64;

/// What [`Firewall::install`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The table did not exist and was created.
    Created,
    /// The table existed and was brought up to date in place; grants kept.
    Updated,
    /// The table existed in an incompatible shape and was replaced in one
    /// transaction; live grants were carried over.
    Recreated,
}

/// One live grant in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Source address allowed in.
    pub addr: IpAddr,
    /// Service it may reach.
    pub service: Service,
    /// Time left before the kernel removes the grant.
    pub expires_in: Option<Duration>,
}

/// Errors from the firewall adapter. Each names the operation and table.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The table name is unusable.
    #[error("invalid nftables table name {name:?}: {reason}")]
    BadTableName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A netfilter netlink socket could not be created.
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused for lack of privilege.
    #[error("permission denied by nf_tables while trying to {op} in table {table:?} (run as root or with CAP_NET_ADMIN; if `nft list table inet {table}` shows `flags owner`, another running sesamed owns it: stop that one first)")]
    PermissionDenied {
        /// What was attempted.
        op: String,
        /// The table.
        table: String,
    },
    /// The kernel rejected one message of a request.
    #[error("nf_tables rejected {op} in table {table:?}: {source}{detail}")]
    Rejected {
        /// The rejected message.
        op: String,
        /// The table.
        table: String,
        /// The errno.
        #[source]
        source: io::Error,
        /// Kernel extended-ack text, formatted as ` (text)`, or empty.
        detail: String,
    },
    /// Sending or receiving failed.
    #[error("netlink I/O failed while trying to {op} in table {table:?}: {source}")]
    Io {
        /// What was attempted.
        op: String,
        /// The table.
        table: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel did not answer in time.
    #[error(
        "no answer from nf_tables within {timeout_ms} ms while trying to {op} in table {table:?}"
    )]
    Timeout {
        /// What was attempted.
        op: String,
        /// The table.
        table: String,
        /// The limit.
        timeout_ms: u64,
    },
    /// A request could not be encoded: some netlink attribute would be
    /// longer than 64 KiB. Nothing was sent.
    #[error("cannot encode {op} for table {table:?}: a netlink attribute would exceed 64 KiB")]
    TooLarge {
        /// What was attempted.
        op: String,
        /// The table.
        table: String,
    },
    /// The kernel's answer could not be decoded.
    #[error("malformed answer from nf_tables while trying to {op}: {what}")]
    Malformed {
        /// What was attempted.
        op: String,
        /// What was wrong.
        what: &'static str,
    },
}

impl FirewallError {
    /// The errno behind this error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FirewallError::Rejected { source, .. } | FirewallError::Io { source, .. } => {
                source.raw_os_error()
            }
            FirewallError::PermissionDenied { .. } => Some(Errno::EPERM as i32),
            _ => None,
        }
    }
}

/// Validates a table name: 1..=64 characters from `[A-Za-z0-9_.-]`, starting
/// with a letter (what `nft` accepts as an unquoted identifier).
pub fn validate_table_name(name: &str) -> Result<(), FirewallError> {
    let bad = |reason| {
        Err(FirewallError::BadTableName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_TABLE_NAME {
        return bad("it is longer than 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("it must start with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}
