//! The control socket: `sesame status`, `grants`, `revoke`, `open` and
//! `reload` talk to a running `sesamed` over a Unix stream socket, one JSON
//! request line, one JSON response line, then the connection closes.
//!
//! Only root or members of `[daemon] control_group` may connect (checked
//! with SO_PEERCRED); the socket is 0660 root:group (0600 without a group)
//! in a directory that others cannot write to.

pub mod cli;
pub mod client;
pub mod server;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A request, one JSON object per line: `{"cmd":"status"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Doors, grants, knocks in progress, counters, uptime.
    Status,
    /// Active grants.
    Grants,
    /// Remove the grants of `addr` (on one door or all) from the kernel now.
    Revoke {
        /// The address.
        addr: IpAddr,
        /// Only this door.
        door: Option<String>,
        /// Also cut the address's live flows to what the grants opened
        /// (conntrack entries); expiry alone never does.
        #[serde(default)]
        kill_flows: bool,
    },
    /// A manual grant of `door`'s services to `addr` for `secs` seconds.
    Open {
        /// The address.
        addr: IpAddr,
        /// The door.
        door: String,
        /// Lifetime in seconds.
        secs: u64,
    },
    /// Re-read the config and apply it.
    Reload,
    /// Lift knock bans: those overlapping `prefix` (an address or
    /// `ADDRESS/LENGTH`), or every ban when it is `None`.
    Unban {
        /// The address or prefix.
        prefix: Option<String>,
    },
}

/// One banned source prefix as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// The prefix, `ADDRESS/LENGTH`.
    pub prefix: String,
    /// Seconds until the ban ends (rounded up).
    pub secs_left: u64,
}

/// Fleet mode as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetInfo {
    /// This gateway's name.
    pub name: String,
    /// The group.
    pub group: String,
    /// The store (URL).
    pub store: String,
    /// Whether the store answered the last command.
    pub store_up: bool,
    /// Its last error, when down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What fleet doors do while it is down.
    pub on_store_down: String,
    /// The gateways and how long ago each last said it was alive
    /// (milliseconds; `None`: never seen).
    pub members: Vec<(String, Option<u64>)>,
}

/// One door as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorInfo {
    /// Name.
    pub name: String,
    /// `knock`, `one_time`, `spa`, `totp` or `fwknop`.
    pub kind: String,
    /// Services opened (`tcp/22`).
    pub services: Vec<String>,
    /// Default grant lifetime in seconds.
    pub open_for_secs: u64,
    /// Knocks in progress on this door.
    pub in_progress: usize,
}

/// One active grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// Granted address.
    pub addr: IpAddr,
    /// Door.
    pub door: String,
    /// Services granted.
    pub services: Vec<String>,
    /// Seconds left (rounded up).
    pub secs_left: u64,
}

/// Counters since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersInfo {
    /// Packets delivered by NFLOG.
    pub packets: u64,
    /// Packets the parser refused.
    pub malformed: u64,
    /// Kernel log overruns.
    pub overruns: u64,
    /// Doors opened.
    pub opened: u64,
    /// Grants refreshed.
    pub refreshed: u64,
    /// Grants revoked (control socket or reload).
    pub revoked: u64,
    /// Manual grants.
    pub manual_opens: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Times the nftables table was re-installed after others deleted or
    /// flushed part of it.
    #[serde(default)]
    pub table_restores: u64,
}

/// The `status` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// sesamed's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The config file.
    pub config: String,
    /// Doors.
    pub doors: Vec<DoorInfo>,
    /// Active grants.
    pub grants: Vec<GrantInfo>,
    /// Knocks in progress (all doors).
    pub in_progress: usize,
    /// Source prefixes whose knocks are ignored (failure budget used up).
    #[serde(default)]
    pub bans: Vec<BanInfo>,
    /// Counters.
    pub counters: CountersInfo,
    /// Fleet mode, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetInfo>,
}

/// A response line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A human-readable result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusInfo>,
    /// For `grants`, `revoke` (the revoked ones) and `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<GrantInfo>>,
}

impl Response {
    /// A success with a message.
    pub fn message(text: impl Into<String>) -> Self {
        Response {
            ok: true,
            message: Some(text.into()),
            ..Default::default()
        }
    }

    /// A failure.
    pub fn error(text: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(text.into()),
            ..Default::default()
        }
    }
}

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        for req in [
            Request::Status,
            Request::Grants,
            Request::Reload,
            Request::Unban { prefix: None },
            Request::Unban {
                prefix: Some("2001:db8::/64".into()),
            },
            Request::Revoke {
                addr: "10.0.0.1".parse().unwrap(),
                door: Some("ssh".into()),
                kill_flows: true,
            },
            Request::Open {
                addr: "fd00::2".parse().unwrap(),
                door: "ssh".into(),
                secs: 600,
            },
        ] {
            let line = serde_json::to_string(&req).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), req);
        }
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
    }
}
