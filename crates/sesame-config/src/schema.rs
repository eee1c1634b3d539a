//! The TOML as written: serde structs that refuse unknown keys and keep
//! every value's position for error messages.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) daemon: RawDaemon,
    #[serde(default)]
    pub(crate) door: BTreeMap<String, Spanned<RawDoor>>,
    /// Fleet mode: the shared store and this gateway's place in it.
    pub(crate) fleet: Option<Spanned<RawFleet>>,
}

/// `[fleet]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    pub(crate) name: Spanned<String>,
    pub(crate) group: Spanned<String>,
    pub(crate) redis: Spanned<String>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) password_file: Option<String>,
    pub(crate) key: String,
    pub(crate) timeout: Option<Spanned<RawDuration>>,
    pub(crate) on_store_down: Option<Spanned<String>>,
    pub(crate) heartbeat: Option<Spanned<RawDuration>>,
    pub(crate) catch_up: Option<Spanned<RawDuration>>,
    #[serde(default)]
    pub(crate) members: BTreeMap<String, Spanned<String>>,
}

/// A door's `fleet`: `true`, `"group"`, or a list of gateways.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDoorFleet {
    Spend(bool),
    Group(String),
    Members(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub(crate) table: Option<Spanned<String>>,
    pub(crate) nflog_group: Option<Spanned<i64>>,
    pub(crate) max_tracked: Option<Spanned<i64>>,
    pub(crate) max_grants: Option<Spanned<i64>>,
    #[serde(default)]
    pub(crate) interfaces: Vec<Spanned<String>>,
    pub(crate) log_file: Option<String>,
    #[serde(default)]
    pub(crate) syslog: bool,
    pub(crate) syslog_socket: Option<String>,
    pub(crate) owned_table: Option<bool>,
    pub(crate) pid_file: Option<String>,
    pub(crate) state_dir: Option<String>,
    pub(crate) server_key: Option<String>,
    pub(crate) user: Option<Spanned<String>>,
    pub(crate) audit_log: Option<String>,
    pub(crate) control_socket: Option<String>,
    pub(crate) control_group: Option<Spanned<String>>,
    pub(crate) metrics: Option<Spanned<String>>,
    pub(crate) ban_after: Option<Spanned<i64>>,
    pub(crate) ban_window: Option<Spanned<RawDuration>>,
    pub(crate) ban_for: Option<Spanned<RawDuration>>,
    pub(crate) ban_prefix_v4: Option<Spanned<i64>>,
    pub(crate) ban_prefix_v6: Option<Spanned<i64>>,
    pub(crate) spa_pk_rate: Option<Spanned<i64>>,
    pub(crate) spa_pk_burst: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDoor {
    /// `"auto"`, `"none"`, or port ranges (`"7000-7100"`, `"8000-8100:udp"`).
    pub(crate) guard: Option<Spanned<toml::Value>>,
    /// `"7000,8000:udp"` or `["7000", "8000:udp"]` (or bare integers).
    pub(crate) sequence: Option<Spanned<toml::Value>>,
    /// knockd-style one-time sequences file (instead of `sequence`).
    pub(crate) one_time_sequences: Option<Spanned<String>>,
    pub(crate) target: Option<Spanned<String>>,
    pub(crate) seq_timeout: Option<Spanned<RawDuration>>,
    pub(crate) open_for: Option<Spanned<RawDuration>>,
    pub(crate) tcp_flags: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) protect: Vec<Spanned<String>>,
    /// Gateway mode: DNAT forwards (`"tcp/2222 -> 10.2.0.2:22"`).
    #[serde(default)]
    pub(crate) forward: Vec<Spanned<String>>,
    /// Gateway mode: routed inner services (`"tcp/10.2.0.2:22"`).
    #[serde(default)]
    pub(crate) route: Vec<Spanned<String>>,
    /// Gateway mode: local redirects (`"tcp/2222 -> 22"`).
    #[serde(default)]
    pub(crate) redirect: Vec<Spanned<String>>,
    pub(crate) on_open: Option<Spanned<Vec<String>>>,
    pub(crate) on_close: Option<Spanned<Vec<String>>>,
    pub(crate) on_open_v6: Option<Spanned<Vec<String>>>,
    pub(crate) on_close_v6: Option<Spanned<Vec<String>>>,
    pub(crate) on_open_shell: Option<Spanned<String>>,
    pub(crate) on_close_shell: Option<Spanned<String>>,
    pub(crate) on_open_shell_v6: Option<Spanned<String>>,
    pub(crate) on_close_shell_v6: Option<Spanned<String>>,
    /// SPA door: UDP port.
    pub(crate) spa_port: Option<Spanned<i64>>,
    pub(crate) spa_window: Option<Spanned<RawDuration>>,
    /// SPA door: accept version 1 public-key packets (no mac1).
    pub(crate) spa_accept_v1: Option<Spanned<bool>>,
    /// SPA door: a user's grant follows them to a new address.
    pub(crate) roaming: Option<Spanned<bool>>,
    /// TOTP door: `"20000-29999"`.
    pub(crate) totp_ports: Option<Spanned<String>>,
    pub(crate) totp_length: Option<Spanned<i64>>,
    pub(crate) totp_period: Option<Spanned<RawDuration>>,
    pub(crate) totp_proto: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) users: BTreeMap<String, Spanned<RawUser>>,
    /// fwknop door: UDP port of the fwknop SPA packets.
    pub(crate) fwknop_port: Option<Spanned<i64>>,
    pub(crate) fwknop_max_age: Option<Spanned<RawDuration>>,
    /// fwknop door: access.conf stanzas, in order.
    #[serde(default)]
    pub(crate) stanzas: Vec<Spanned<RawStanza>>,
    /// fwknop door: NAT access requests (ENABLE_IPT_FORWARDING).
    pub(crate) nat_forwarding: Option<Spanned<bool>>,
    /// fwknop door: local NAT requests (ENABLE_IPT_LOCAL_NAT).
    pub(crate) nat_local: Option<Spanned<bool>>,
    /// fwknop door: the inner networks NAT requests may name.
    pub(crate) nat_hosts: Option<Spanned<Vec<String>>>,
    /// Fleet mode: single use fleet-wide (`true`), and grants that open on
    /// the whole group (`"group"`) or on the gateways listed.
    pub(crate) fleet: Option<Spanned<RawDoorFleet>>,
}

/// One `[[door.NAME.stanzas]]` of an fwknop door (access.conf's meaning).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStanza {
    /// `["ANY"]` or addresses and networks.
    pub(crate) source: Spanned<Vec<String>>,
    /// Defaults to the door's `protect` list.
    pub(crate) open_ports: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(crate) restrict_ports: Vec<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) key_base64: Option<Spanned<String>>,
    pub(crate) hmac_key: Option<Spanned<String>>,
    pub(crate) hmac_key_base64: Option<Spanned<String>>,
    pub(crate) hmac_digest: Option<Spanned<String>>,
    pub(crate) encryption_mode: Option<Spanned<String>>,
    pub(crate) access_timeout: Option<Spanned<RawDuration>>,
    pub(crate) max_timeout: Option<Spanned<RawDuration>>,
    pub(crate) require_username: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) require_source_address: bool,
    #[serde(default)]
    pub(crate) enable_cmd_exec: bool,
    pub(crate) cmd_exec_user: Option<Spanned<String>>,
    pub(crate) cmd_exec_group: Option<Spanned<String>>,
    /// `["ANY"]` or addresses and networks the packet must be sent to.
    pub(crate) destination: Option<Spanned<Vec<String>>>,
    pub(crate) access_expire: Option<Spanned<i64>>,
    /// `FORCE_NAT`: `"10.2.0.2:22"`.
    pub(crate) force_nat: Option<Spanned<String>>,
    /// `FORCE_MASQUERADE`.
    #[serde(default)]
    pub(crate) force_masquerade: bool,
    /// `DISABLE_DNAT`.
    #[serde(default)]
    pub(crate) disable_dnat: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    /// SPA symmetric key file.
    pub(crate) key: Option<String>,
    /// SPA Ed25519 public key (inline or file).
    pub(crate) identity: Option<String>,
    /// TOTP secret file.
    pub(crate) totp_secret: Option<String>,
    /// Key rotation: the old symmetric key file, or
    pub(crate) previous_key: Option<String>,
    /// the old Ed25519 public key, accepted until
    pub(crate) previous_identity: Option<String>,
    /// this RFC 3339 UTC time (`"2026-12-31T00:00:00Z"`).
    pub(crate) previous_until: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) services: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) allow_address: bool,
}

/// Integer seconds or a human duration such as `"30s"`, `"5m"`, `"500ms"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDuration {
    Seconds(i64),
    Text(String),
}
