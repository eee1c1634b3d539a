//! The daemon's configuration file: strict TOML, validated into core doors.
//!
//! Unknown keys are errors, and every error names the file, the line and the
//! offending item, so that `sesamed --check-config` and a reload can say
//! exactly what is wrong.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod import;
mod model;
pub mod one_time;
mod parse;
mod schema;

use parse::Ctx;
use schema::*;

pub use import::{fwknop as fwknop_conf, knockd};
pub use model::*;

use std::collections::BTreeMap;
use std::path::Path;

use sesame_client::located::ReadError;

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    sesame_client::secure_file::check_not_writable_by_others(path)?;
    let text = std::fs::read_to_string(path).map_err(ReadError::of(path, "config"))?;
    parse(&text, path)
}

/// Validates config text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let ctx = Ctx {
        text,
        path: path.display().to_string(),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = ctx.position(e.span().unwrap_or(0..0));
        ConfigError::Syntax {
            path: ctx.path.clone(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })?;
    let daemon = ctx.daemon(raw.daemon)?;
    let fleet = raw.fleet.map(|f| ctx.fleet(f)).transpose()?;
    let mut fleet_doors = BTreeMap::new();
    if raw.door.is_empty() {
        return Err(ConfigError::NoDoors { path: ctx.path });
    }
    let mut doors = Vec::with_capacity(raw.door.len());
    let mut one_time = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for (name, mut door) in raw.door {
        if let Some(raw_fleet) = door.get_mut().fleet.take() {
            if let Some(f) = ctx.door_fleet(&name, raw_fleet, fleet.as_ref())? {
                fleet_doors.insert(name.clone(), f);
            }
        }
        let (door, file, kind) = ctx.door(name, door)?;
        if let Some(file) = file {
            one_time.insert(door.name.clone(), file);
        }
        if let Some(kind) = kind {
            kinds.insert(door.name.clone(), kind);
        }
        doors.push(door);
    }
    ctx.check_cross_door(&doors, &kinds)?;
    Ok(Config {
        path: path.to_path_buf(),
        daemon,
        doors,
        one_time,
        kinds,
        fleet,
        fleet_doors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_core::{Knock, Proto};
    use std::path::PathBuf;
    use std::time::Duration;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn daemon_user_and_audit_log() {
        let cfg = parse(
            "[daemon]\nuser = \"sesame\"\naudit_log = \"/var/log/sesame-audit.log\"\n[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(cfg.daemon.user.as_deref(), Some("sesame"));
        assert_eq!(
            cfg.daemon.audit_log,
            Some(PathBuf::from("/var/log/sesame-audit.log"))
        );
        let e = parse("[daemon]\nuser = \"-x y\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.to_string().contains("daemon.user"), "{e}");
        let cfg = parse(
            "[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(cfg.daemon.user.is_none());
    }

    #[test]
    fn group_writable_config_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("sesame-perm-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::File(sesame_client::located::FileError::Permissions(_))
            ),
            "{e}"
        );
        assert!(e.to_string().contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../../examples/sesame.toml");
        let cfg = parse_str(text).expect("examples/sesame.toml must be valid");
        assert!(!cfg.doors.is_empty());
    }

    #[test]
    fn full_door_parses_with_defaults() {
        let cfg = parse_str(
            r#"
            [door.ssh]
            sequence = ["7000", "8000:udp", 9000]
            protect = ["tcp/22"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.name, "ssh");
        assert_eq!(door.sequence.len(), 3);
        assert_eq!(door.sequence[1].proto, Proto::Udp);
        assert_eq!(door.seq_timeout, DEFAULT_SEQ_TIMEOUT);
        assert_eq!(door.open_for, DEFAULT_OPEN_FOR);
        assert_eq!(cfg.daemon.nflog_group, DEFAULT_NFLOG_GROUP);
        assert_eq!(cfg.daemon.max_tracked, DEFAULT_MAX_TRACKED);
    }

    #[test]
    fn comma_string_sequence_and_durations() {
        let cfg = parse_str(
            r#"
            [door.web]
            sequence = "1000, 2000:udp"
            seq_timeout = "1500ms"
            open_for = 45
            protect = ["tcp/443", "udp/443"]
            "#,
        )
        .unwrap();
        let door = &cfg.doors[0];
        assert_eq!(door.sequence.len(), 2);
        assert_eq!(door.seq_timeout, Duration::from_millis(1500));
        assert_eq!(door.open_for, Duration::from_secs(45));
        assert_eq!(door.services.len(), 2);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err =
            parse_str("[door.ssh]\nsequence = [\"7000\"]\nprotect = [\"tcp/22\"]\nopen_fro = 3\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:"), "{msg}");
        assert!(msg.contains("open_fro"), "{msg}");
    }

    #[test]
    fn junk_port_names_line_and_item() {
        let err =
            parse_str("[door.ssh]\nprotect = [\"tcp/22\"]\nsequence = [\"7000\",\n  \"70x0\"]\n")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:4:"), "{msg}");
        assert!(msg.contains("door \"ssh\" sequence[1] \"70x0\""), "{msg}");
    }

    #[test]
    fn bad_values_are_refused() {
        let cases = [
            ("sequence = []\nprotect = [\"22\"]", "empty"),
            ("sequence = [\"1\"]\nprotect = [\"sctp/22\"]", "protect[0]"),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nopen_for = \"soon\"",
                "open_for",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\nseq_timeout = 0",
                "seq_timeout",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\ntcp_flags = \"syn,nope\"",
                "tcp_flags",
            ),
            ("sequence = [\"1\"]", "protects no service"),
            (
                "sequence = [\"22\"]\nprotect = [\"22\"]",
                "also a protected service",
            ),
            (
                "sequence = [\"1\"]\non_open = [\"echo\", \"%PORT%\"]",
                "%PORT%",
            ),
            (
                "sequence = [\"1\"]\nprotect = [\"22\"]\non_open = []",
                "on_open is empty",
            ),
        ];
        for (body, needle) in cases {
            let text = format!("[door.d]\n{body}\n");
            let msg = parse_str(&text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{body:?} gave {msg}");
            assert!(msg.starts_with("test.toml:"), "{msg}");
        }
        let long: Vec<String> = (1..=33).map(|p| format!("\"{p}\"")).collect();
        let text = format!(
            "[door.d]\nprotect=[\"22\"]\nsequence = [{}]\n",
            long.join(",")
        );
        assert!(parse_str(&text)
            .unwrap_err()
            .to_string()
            .contains("at most 32"));
    }

    #[test]
    fn daemon_settings_are_validated() {
        let door = "[door.d]\nsequence=[\"1\"]\nprotect=[\"22\"]\n";
        let ok = parse_str(&format!(
            "[daemon]\nnflog_group = 7\nmax_tracked = 5\ntable = \"t_1\"\n{door}"
        ))
        .unwrap();
        assert_eq!(ok.daemon.nflog_group, 7);
        assert_eq!(ok.daemon.max_tracked, 5);
        assert_eq!(ok.daemon.table, "t_1");
        for (bad, needle) in [
            ("nflog_group = 70000", "nflog_group"),
            ("max_tracked = 0", "max_tracked"),
            ("table = \"a b\"", "daemon.table"),
            ("bogus = 1", "bogus"),
        ] {
            let msg = parse_str(&format!("[daemon]\n{bad}\n{door}"))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(needle) && msg.starts_with("test.toml:2:"),
                "{msg}"
            );
        }
        assert!(matches!(
            parse_str("[daemon]\n"),
            Err(ConfigError::NoDoors { .. })
        ));
    }

    #[test]
    fn fwknop_doors_parse_with_defaults_and_lines() {
        let cfg = parse_str(
            "[door.fw]\nfwknop_port = 62201\nprotect = [\"tcp/22\", \"tcp/443\"]\n\
             [[door.fw.stanzas]]\nsource = [\"ANY\"]\nkey = \"pass\"\n\
             \n[[door.fw.stanzas]]\nsource = [\"192.0.2.1\", \"2001:db8::/32\"]\n\
             open_ports = [\"tcp/443\"]\nkey_base64 = \"YWJj\"\nhmac_key_base64 = \"aG1hYw==\"\n\
             hmac_digest = \"sha384\"\nencryption_mode = \"cfb\"\naccess_timeout = 60\n\
             max_timeout = \"10m\"\nrequire_username = \"bob\"\nrequire_source_address = true\n\
             enable_cmd_exec = true\naccess_expire = 2000000000\n",
        )
        .unwrap();
        let Some(DoorKind::Fwknop(f)) = cfg.kinds.get("fw") else {
            panic!("fwknop door kind");
        };
        assert_eq!(f.port, 62201);
        assert_eq!(f.max_age, crate::import::fwknop::values::DEFAULT_MAX_AGE);
        let (a, b) = (&f.stanzas[0], &f.stanzas[1]);
        assert_eq!((a.line, b.line), (4, 8), "the [[door.fw.stanzas]] lines");
        assert_eq!(a.open_ports.len(), 2, "default: every protected service");
        assert!(a.source.is_empty() && a.hmac_key.is_none());
        assert_eq!(a.key.0, b"pass");
        assert_eq!(
            (a.hmac_digest.name(), a.encryption_mode.name()),
            ("SHA256", "CBC")
        );
        assert_eq!(b.source.len(), 2);
        assert_eq!(b.open_ports.len(), 1);
        assert_eq!(b.key.0, b"abc");
        assert_eq!(b.hmac_key.as_ref().unwrap().0, b"hmac");
        assert_eq!(
            (b.hmac_digest.name(), b.encryption_mode.name()),
            ("SHA384", "CFB")
        );
        assert_eq!(b.access_timeout, Duration::from_secs(60));
        assert_eq!(b.max_timeout, Some(Duration::from_secs(600)));
        assert_eq!(b.require_username.as_deref(), Some("bob"));
        assert!(b.require_source_address && b.enable_cmd_exec);
        assert_eq!(b.access_expire, Some(2_000_000_000));
        let door = &cfg.doors[0];
        assert_eq!(
            door.open_for,
            Duration::from_secs(600),
            "default: the longest grant"
        );
        assert_eq!(
            observed_knocks(door, cfg.kinds.get("fw")),
            [Knock {
                port: 62201,
                proto: Proto::Udp
            }]
        );
    }

    #[test]
    fn fwknop_doors_refuse_bad_values_with_their_line() {
        let head = "[door.fw]\nfwknop_port = 62201\nprotect = [\"tcp/22\"]\n";
        let st = "[[door.fw.stanzas]]\nsource = [\"ANY\"]\n";
        for (text, line, needle) in [
            (format!("{head}sequence = [\"1\"]\n{st}key = \"k\""), 4, "exactly one of"),
            (format!("{head}spa_port = 1\n{st}key = \"k\""), 4, "exactly one of"),
            ("[door.fw]\nsequence = [\"1\"]\nprotect = [\"tcp/22\"]\nfwknop_max_age = 5".into(), 1, "only valid with fwknop_port"),
            ("[door.fw]\nsequence = [\"1\"]\nprotect = [\"tcp/22\"]\n[[door.fw.stanzas]]\nsource = [\"ANY\"]\nkey = \"k\"".into(), 1, "only valid with fwknop_port"),
            (head.to_string(), 1, "at least one [[door.NAME.stanzas]]"),
            (format!("{head}{st}key = \"k\"\nopen_ports = [\"tcp/80\"]"), 4, "not among the door's protect"),
            (format!("{head}{st}key = \"k\"\nopen_ports = []"), 7, "leave it out"),
            (format!("{head}{st}key = \"k\"\nopen_ports = [\"tcp/22\", \"icmp/1\"]"), 7, "icmp/1"),
            (format!("{head}{st}key_base64 = \"not base64!\""), 6, "not valid base64"),
            (format!("{head}{st}key = \"k\"\nkey_base64 = \"YQ==\""), 7, "not both"),
            (format!("{head}{st}hmac_key = \"h\""), 4, "missing: give key"),
            (format!("{head}{st}key = \"{}\"", "k".repeat(33)), 4, "1 to 32 bytes"),
            (format!("{head}{st}key = \"k\"\nhmac_key = \"h\"\nencryption_mode = \"legacy\""), 4, "legacy"),
            (format!("{head}{st}key = \"k\"\nencryption_mode = \"xts\""), 7, "unknown encryption mode"),
            (format!("{head}{st}key = \"k\"\nhmac_digest = \"sha224\""), 7, "unknown HMAC digest"),
            (format!("{head}{st}key = \"k\"\nsource_port = 1"), 7, "source_port"),
            (format!("{head}{st}key = \"k\"\naccess_expire = -1"), 7, "Unix seconds"),
            (format!("{head}[[door.fw.stanzas]]\nsource = [\"10.0.0.0/40\"]\nkey = \"k\""), 5, "over 32"),
            (format!("{head}[[door.fw.stanzas]]\nsource = []\nkey = \"k\""), 5, "empty"),
            (format!("{head}fwknop_max_age = 100001\n{st}key = \"k\""), 4, "at most 100000"),
            (format!("{head}[door.fw.users.u]\nkey = \"k\"\n{st}key = \"k\""), 4, "no users"),
            (format!("[door.fw]\nfwknop_port = 0\nprotect = [\"tcp/22\"]\n{st}key = \"k\""), 2, "UDP port"),
            (format!("[door.fw]\nfwknop_port = 62201\n{st}key = \"k\""), 1, "protects no service"),
            (format!("[door.fw]\nfwknop_port = 22\nprotect = [\"udp/22\"]\n{st}key = \"k\""), 1, "also a protected service"),
        ] {
            let err = parse_str(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(err.starts_with(&format!("test.toml:{line}:")), "{text:?} gave {err}");
        }
    }

    #[test]
    fn spa_and_totp_doors_parse_and_refuse_mixtures() {
        let cfg = parse_str(
            "[door.spa]\nspa_port = 62201\nprotect = [\"tcp/22\", \"tcp/443\"]\n\
             [door.spa.users.alice]\nkey = \"/k/alice\"\n\
             [door.spa.users.bob]\nidentity = \"sesame-identity-pub-v1:x\"\nservices = [\"tcp/22\"]\n\
             [door.vpn]\ntotp_ports = \"20000-20999\"\ntotp_length = 3\nprotect = [\"udp/51820\"]\n\
             [door.vpn.users.carol]\ntotp_secret = \"/k/carol\"\n",
        )
        .unwrap();
        let Some(DoorKind::Spa(spa)) = cfg.kinds.get("spa") else {
            panic!("spa door kind");
        };
        assert_eq!(spa.port, 62201);
        assert_eq!(spa.window, DEFAULT_SPA_WINDOW);
        assert_eq!(
            spa.users[0].services.len(),
            2,
            "default: every protected service"
        );
        assert_eq!(spa.users[1].services.len(), 1);
        let Some(DoorKind::Totp(t)) = cfg.kinds.get("vpn") else {
            panic!("totp door kind");
        };
        assert_eq!((t.ports.clone(), t.length), (20000..=20999, 3));
        let vpn = cfg.doors.iter().find(|d| d.name == "vpn").unwrap();
        assert_eq!(observed_knocks(vpn, cfg.kinds.get("vpn")).len(), 1000);

        for (text, needle) in [
            (
                "[door.a]\nspa_port = 1\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"",
                "exactly one of",
            ),
            ("[door.a]\nspa_port = 1\nprotect = [\"tcp/22\"]", "at least one"),
            (
                "[door.a]\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"",
                "only for SPA",
            ),
            (
                "[door.a]\nspa_port = 1\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"\nservices = [\"tcp/80\"]",
                "not among the door's protect",
            ),
            (
                "[door.a]\ntotp_ports = \"9-5\"\nprotect = [\"tcp/22\"]\n[door.a.users.u]\ntotp_secret = \"k\"",
                "totp_ports",
            ),
            (
                "[door.a]\ntotp_ports = \"20-2000\"\nprotect = [\"tcp/22\"]\n[door.a.users.u]\ntotp_secret = \"k\"",
                "protected service",
            ),
            ("[door.a]\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\ntotp_length = 3", "only valid with totp_ports"),
        ] {
            let err = parse_str(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(err.starts_with("test.toml:"), "{err}");
        }
    }

    #[test]
    fn key_rotation_and_roaming_parse_and_bad_values_are_named() {
        let cfg = parse_str(
            "[door.spa]\nspa_port = 62201\nroaming = true\nprotect = [\"tcp/22\"]\n\
             [door.spa.users.alice]\nkey = \"/k/new\"\nprevious_key = \"/k/old\"\n\
             previous_until = \"2026-12-31T00:00:00Z\"\n",
        )
        .unwrap();
        let Some(DoorKind::Spa(spa)) = cfg.kinds.get("spa") else {
            panic!("spa door kind");
        };
        assert!(spa.roaming);
        assert_eq!(
            spa.users[0].previous,
            Some((
                CredentialSource::SymmetricKeyFile("/k/old".into()),
                1_798_675_200
            ))
        );
        let door =
            "[door.a]\nspa_port = 1\nprotect = [\"tcp/22\"]\n[door.a.users.u]\nkey = \"k\"\n";
        for (extra, needle) in [
            ("previous_key = \"o\"\n", "needs previous_until"),
            ("previous_until = \"2026-12-31T00:00:00Z\"\n", "only valid with previous_key"),
            (
                "previous_key = \"o\"\nprevious_until = \"tomorrow\"\n",
                "users.u previous_until \"tomorrow\": expected an RFC 3339",
            ),
            (
                "previous_key = \"o\"\nprevious_identity = \"i\"\nprevious_until = \"2026-12-31T00:00:00Z\"\n",
                "not both",
            ),
        ] {
            let text = format!("{door}{extra}");
            let err = parse_str(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{text:?} gave {err}");
            assert!(err.starts_with("test.toml:"), "{err}");
        }
        let err = parse_str("[door.a]\nsequence = [\"5\"]\nprotect = [\"tcp/22\"]\nroaming = true")
            .expect_err("roaming on a knock door")
            .to_string();
        assert!(
            err.contains("roaming") && err.contains("only valid with spa_port"),
            "{err}"
        );
    }
}
