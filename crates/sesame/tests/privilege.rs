//! The privilege drop, end to end: a real sesamed started with `--user
//! nobody` keeps only CAP_NET_ADMIN (read from /proc/PID/status) and still
//! opens doors (a real TCP connect after a knock). Needs root, like every
//! namespace test.

mod support;

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use sesame::testbed::{Side, Testbed};
use support::*;

const PORT: u16 = 2323;
const SEQ: [&str; 3] = ["7100", "8100:udp", "9100"];
/// CAP_NET_ADMIN is capability 12.
const NET_ADMIN_ONLY: u64 = 1 << 12;

fn status_field(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status:\n{status}"))
        .trim()
        .to_string()
}

fn hex(pid: u32, key: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, key), 16).unwrap()
}

#[test]
fn unprivileged_daemon_keeps_only_cap_net_admin_and_still_opens_doors() {
    let mut bed = testbed_or_skip!("priv");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let state = std::env::temp_dir().join(format!("{}-state", bed.server));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("probe"), "x").unwrap();

    let _service = Service::start(&bed, PORT).expect("echo service");
    let config = format!(
        "[door.ssh]\nsequence = {SEQ:?}\nseq_timeout = \"5s\"\nopen_for = \"20s\"\nprotect = [\"tcp/{PORT}\"]\n"
    );
    let daemon = start_daemon(
        &mut bed,
        &config,
        &["--user", "nobody", "--state-dir", state.to_str().unwrap()],
    );
    daemon.log.expect(
        &["event=\"privileges\"", "nobody"],
        Duration::from_secs(2),
        "no privilege-drop line",
    );

    let pid = daemon.pid;
    let uids: Vec<u32> = status_field(pid, "Uid")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(
        uids,
        vec![nobody.uid.as_raw(); 4],
        "real/effective/saved/fs uid"
    );
    let gids: Vec<u32> = status_field(pid, "Gid")
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert_eq!(
        gids,
        vec![nobody.gid.as_raw(); 4],
        "real/effective/saved/fs gid"
    );
    assert_eq!(
        status_field(pid, "Groups"),
        nobody.gid.as_raw().to_string(),
        "supplementary groups"
    );
    assert_eq!(hex(pid, "CapEff"), NET_ADMIN_ONLY, "CapEff");
    assert_eq!(hex(pid, "CapPrm"), NET_ADMIN_ONLY, "CapPrm");
    assert_eq!(hex(pid, "CapBnd"), NET_ADMIN_ONLY, "CapBnd");
    assert_eq!(hex(pid, "CapInh"), 0, "CapInh");
    assert_eq!(hex(pid, "CapAmb"), 0, "CapAmb");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    // The state directory was handed over before the drop.
    let meta = std::fs::metadata(&state).unwrap();
    assert_eq!(meta.uid(), nobody.uid.as_raw());
    assert_eq!(
        std::fs::metadata(state.join("probe")).unwrap().uid(),
        nobody.uid.as_raw()
    );

    // Still works: the grant needs CAP_NET_ADMIN, the NFLOG socket stayed open.
    let server: IpAddr = Testbed::addr(Side::Server, false);
    assert!(!can_connect(&bed, server, PORT), "open before the knock");
    knock(&bed, server, &SEQ);
    assert!(
        wait_connect(&bed, server, PORT, true, Duration::from_secs(3)),
        "an unprivileged sesamed did not open the door:\n{}",
        daemon.log.dump()
    );
    daemon.log.expect(
        &["event=\"open\""],
        Duration::from_secs(2),
        "expected log line",
    );
    assert_eq!(daemon.log.count("ERROR"), 0, "{}", daemon.log.dump());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn unknown_user_fails_before_touching_the_firewall() {
    let path = std::env::temp_dir().join(format!("sesame-priv-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[door.d]\nsequence = [\"1000\"]\nprotect = [\"tcp/22\"]\n[daemon]\ntable = \"sesame_never_made\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin("sesamed"))
        .arg("--config")
        .arg(&path)
        .args(["--user", "no-such-user-sesame-xyz"])
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-user-sesame-xyz"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

/// Audit item 13: the state directory belongs to the daemon user, who can
/// plant symlinks and hard links there. A restart as root must not write
/// through them, nor hand a root file to the user by a path-based chown.
#[test]
fn a_restart_as_root_never_writes_through_links_in_the_users_state_directory() {
    let mut bed = testbed_or_skip!("privlnk");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let dir = bed.scratch();
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let key = dir.join("alice.key");
    let out = std::process::Command::new(bin("sesame"))
        .args(["keygen", "spa", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    // A root-only file the daemon user would love to own or overwrite.
    let victim = dir.join("victim");
    std::fs::write(&victim, "root secret\n").unwrap();
    std::fs::set_permissions(&victim, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = format!(
        "[door.ssh]\nspa_port = 62201\nprotect = [\"tcp/{PORT}\"]\n[door.ssh.users.alice]\nkey = \"{}\"\n",
        key.display()
    );
    // First run as nobody: the directory and its files become nobody's.
    let daemon = start_daemon(
        &mut bed,
        &config,
        &["--user", "nobody", "--state-dir", state.to_str().unwrap()],
    );
    stop_daemon(&mut bed, &daemon, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        std::fs::metadata(&state).unwrap().uid(),
        nobody.uid.as_raw()
    );
    // What the daemon user does next: every state file becomes a link to
    // the victim.
    for name in [
        "replay.boot",
        "replay.window",
        "replay.journal",
        ".replay.bin.tmp",
    ] {
        let p = state.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        std::os::unix::fs::lchown(&p, Some(nobody.uid.as_raw()), None).ok();
    }
    // The restart as root refuses (a symlink where a state file belongs)
    // or replaces the links; it never writes through them.
    let mut cmd = bed.command(Side::Server, bin("sesamed").to_str().unwrap());
    cmd.args(["--config"])
        .arg(dir.join("sesame.toml"))
        .args(["--user", "nobody", "--state-dir", state.to_str().unwrap()])
        .args(["--control-socket", dir.join("c.sock").to_str().unwrap()]);
    std::fs::write(dir.join("sesame.toml"), &config).unwrap();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started through planted links:\n{stderr}"
    );
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root secret\n");
    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!(meta.uid(), 0, "the victim was handed to the daemon user");
    assert_eq!(meta.mode() & 0o777, 0o600);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--check-config --user U` reads every file as U: a key only root can
/// read fails there, naming the user and the file, instead of after the
/// table is installed. A start with such a key fails before the firewall
/// is touched.
#[test]
fn check_config_reads_keys_as_the_service_user() {
    let mut bed = testbed_or_skip!("ckuser");
    let dir = bed.scratch();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let key = dir.join("laptop.key");
    keygen("spa", &key);
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!(
            "[door.ssh]\nspa_port = 62201\nprotect = [\"tcp/{PORT}\"]\n[door.ssh.users.laptop]\nkey = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let check = || {
        std::process::Command::new(bin("sesamed"))
            .args(["--check-config"])
            .arg(&config)
            .args(["--user", "nobody"])
            .output()
            .unwrap()
    };
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a root-only key passed as nobody");
    assert!(
        stderr.contains("as user nobody")
            && stderr.contains("laptop.key")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    // Root alone (no --user) reads it: the check is the user's, not root's.
    let as_root = std::process::Command::new(bin("sesamed"))
        .arg("--check-config")
        .arg(&config)
        .output()
        .unwrap();
    assert_success(&as_root, "sesamed --check-config as root");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    std::os::unix::fs::chown(&key, Some(nobody.uid.as_raw()), None).unwrap();
    let out = check();
    assert_success(&out, "sesamed --check-config, key owned by nobody");

    // A start whose key cannot be read fails before the table exists
    // (it would drop the protected port with no daemon to open it).
    std::fs::remove_file(&key).unwrap();
    let failed = bed
        .command(Side::Server, bin("sesamed").to_str().unwrap())
        .arg("--config")
        .arg(&config)
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .output()
        .unwrap();
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("laptop.key"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let tables = nft(&bed, &["list", "tables"]);
    assert!(!tables.contains("sesame"), "a failed start left {tables}");
    let _ = &mut bed;
}
