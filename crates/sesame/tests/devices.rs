//! A device's life on an SPA door, in throw-away network namespaces with
//! the real binaries: enrolled from a `sesame invite` URI, its key rotated
//! with a grace period, revoked, and roaming to a new address with
//! `--follow`. Each step is checked by a TCP connect to the protected port
//! and by the daemon's log.

mod support;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sesame::testbed::{Side, Testbed, CLIENT2_V4};
use support::*;

/// The protected service.
const PORT: u16 = 2222;

/// `[daemon]` and the head of an SPA door `ssh` protecting [`PORT`];
/// users follow.
fn door_head(dir: &Path, extra: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"{}\"\n[door.ssh]\nspa_port = 62201\nopen_for = \"30s\"\n\
         protect = [\"tcp/{PORT}\"]\n{extra}",
        dir.join("state").display()
    )
}

/// `sesame ARGS` on the host; must succeed; returns stdout.
fn sesame(args: &[&str]) -> String {
    let out = Command::new(bin("sesame")).args(args).output().unwrap();
    assert_success(&out, format!("sesame {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sesame revoke ADDR` through the daemon's control socket.
fn revoke(daemon: &Daemon, addr: &str) {
    sesame(&["revoke", addr, "--socket", daemon.socket.to_str().unwrap()]);
}

/// The config file start_daemon wrote, rewritten and reloaded.
fn reload(bed: &Testbed, daemon: &Daemon, config: &str) {
    let path = std::env::temp_dir().join(format!("{}-cfg/sesame.toml", bed.server));
    std::fs::write(&path, config).unwrap();
    let out = sesame(&["reload", "--socket", daemon.socket.to_str().unwrap()]);
    assert!(out.contains("config reloaded"), "{out}");
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `secs` (Unix time) as RFC 3339 UTC, by `date`.
fn rfc3339(secs: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    assert_success(&out, "date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The echo service, and sesamed with an SPA door `ssh` (`extra` adds door
/// lines) whose one user `phone` has a fresh key: returns the key file.
fn phone_door(bed: &mut Testbed, extra: &str) -> (PathBuf, Daemon, Service) {
    let dir = bed.scratch();
    let key = dir.join("phone.key");
    keygen("spa", &key);
    let config = format!(
        "{}[door.ssh.users.phone]\nkey = \"{}\"\n",
        door_head(&dir, extra),
        key.display()
    );
    let service = Service::start(bed, PORT).expect("echo service");
    let daemon = start_daemon(bed, &config, &[]);
    (key, daemon, service)
}

/// A client config in `dir` with server `srv` at `host` and its SPA door
/// `ssh` knocked with `key`.
fn client_config(dir: &Path, host: &str, key: &Path) -> PathBuf {
    let client = dir.join("client.toml");
    std::fs::write(
        &client,
        format!(
            "[server.srv]\nhost = \"{host}\"\n[server.srv.spa.ssh]\nport = 62201\nkey = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    client
}

/// Starts `sesame exec srv --port PORT FLAGS --config CLIENT` in the client
/// namespace, running a program that lives `secs` seconds, and waits until
/// that program runs. Returns sesame's stderr lines.
fn start_session(bed: &mut Testbed, client: &Path, flags: &[&str], secs: u32) -> Log {
    let program = format!("echo session started >&2; sleep {secs}");
    let mut session = bed.command(Side::Client, bin("sesame").to_str().unwrap());
    session
        .args(["exec", "srv", "--port", &PORT.to_string()])
        .args(flags)
        .arg("--config")
        .arg(client)
        .args(["--", "sh", "-c", &program])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let index = bed.spawn(session).expect("spawn sesame exec");
    let log = Log::default();
    let stderr = bed.child(index).stderr.take().unwrap();
    log.collect(stderr, "sesame exec".into(), || true);
    log.expect(
        &["session started"],
        Duration::from_secs(10),
        "sesame exec started its program",
    );
    log
}

#[test]
fn a_device_enrolled_from_a_uri_knocks_and_a_tampered_uri_installs_nothing() {
    let mut bed = testbed_or_skip!("enroll");
    let dir = bed.scratch();
    let (key, daemon, _service) = phone_door(&mut bed, "");
    let server = Testbed::addr(Side::Server, false);
    let uri = sesame(&[
        "invite",
        "--host",
        &server.to_string(),
        "--server",
        "home",
        "--door",
        "ssh",
        "--key",
        key.to_str().unwrap(),
    ]);
    let uri = uri.trim();
    assert!(uri.starts_with("sesame://enroll?"), "{uri}");
    // The device has nothing but the URI.
    let device = dir.join("device");
    let client = device.join("client.toml");
    // A URI damaged in transit is refused, and nothing is written.
    let damaged = uri.replace("port=62201", "port=6220x");
    let out = Command::new(bin("sesame"))
        .args(["enroll", &damaged, "--config", client.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("port"), "{stderr}");
    assert!(!device.exists(), "a refused URI wrote files");
    let out = sesame(&["enroll", uri, "--config", client.to_str().unwrap()]);
    assert!(out.contains("enrolled"), "{out}");
    assert_closes(&bed, server, PORT, Duration::from_millis(300));
    knock_from_client(&bed, &["home", "ssh", "--config", client.to_str().unwrap()]);
    assert_opens(&bed, server, PORT);
    daemon.log.expect(
        &["spa_accepted", "user phone"],
        Duration::from_secs(2),
        "enrolled knock",
    );
    // Enrolling the same door twice is refused (the key file is kept).
    let out = Command::new(bin("sesame"))
        .args(["enroll", uri, "--config", client.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has a door"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fresh SPA keys `dir/NAME.key`, one per name.
fn spa_keys<const N: usize>(dir: &Path, names: [&str; N]) -> [PathBuf; N] {
    names.map(|name| {
        let key = dir.join(format!("{name}.key"));
        keygen("spa", &key);
        key
    })
}

/// `sesame knock SERVER --spa-key KEY` from the client.
fn knock_with_key(bed: &Testbed, key: &Path) {
    let server = Testbed::addr(Side::Server, false).to_string();
    knock_from_client(bed, &[&server, "--spa-key", key.to_str().unwrap()]);
}

/// The first key's packet is refused (`spa_refused`, and the log line
/// names `why`) and opens nothing; then `allowed`'s packet opens.
fn only_the_second_opens(
    bed: &Testbed,
    daemon: &Daemon,
    (refused, why): (&Path, &[&str]),
    allowed: &Path,
) {
    let server = Testbed::addr(Side::Server, false);
    knock_with_key(bed, refused);
    let mut needles = vec!["spa_refused"];
    needles.extend_from_slice(why);
    daemon
        .log
        .expect(&needles, Duration::from_secs(3), "the refused key's packet");
    assert_closes(bed, server, PORT, Duration::from_millis(500));
    knock_with_key(bed, allowed);
    assert_opens(bed, server, PORT);
}

#[test]
fn a_rotated_key_works_during_its_grace_period_and_only_the_new_one_after() {
    let mut bed = testbed_or_skip!("rotate");
    let dir = bed.scratch();
    let [old, new] = spa_keys(&dir, ["old", "new"]);
    let until = unix_now() + 8;
    let config = format!(
        "{}[door.ssh.users.laptop]\nkey = \"{}\"\nprevious_key = \"{}\"\nprevious_until = \"{}\"\n",
        door_head(&dir, ""),
        new.display(),
        old.display(),
        rfc3339(until)
    );
    let _service = Service::start(&bed, PORT).expect("echo service");
    let daemon = start_daemon(&mut bed, &config, &[]);
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false).to_string();
    let knock_with = |key: &Path| knock_with_key(&bed, key);
    // During the grace period: both keys open.
    knock_with(&old);
    assert_opens(&bed, server, PORT);
    revoke(&daemon, &client);
    assert_closes(&bed, server, PORT, Duration::from_secs(1));
    knock_with(&new);
    assert_opens(&bed, server, PORT);
    revoke(&daemon, &client);
    assert_closes(&bed, server, PORT, Duration::from_secs(1));
    assert!(
        unix_now() < until,
        "the grace period ended before the test could use it"
    );
    // After it: only the new one.
    while unix_now() <= until {
        std::thread::sleep(Duration::from_millis(200));
    }
    only_the_second_opens(&bed, &daemon, (&old, &["key_retired", "laptop"]), &new);
}

#[test]
fn a_revoked_device_is_refused_and_the_others_keep_working() {
    let mut bed = testbed_or_skip!("devrevoke");
    let dir = bed.scratch();
    let [phone, laptop] = spa_keys(&dir, ["phone", "laptop"]);
    let user =
        |name: &str, key: &Path| format!("[door.ssh.users.{name}]\nkey = \"{}\"\n", key.display());
    let both = format!(
        "{}{}{}",
        door_head(&dir, ""),
        user("phone", &phone),
        user("laptop", &laptop)
    );
    let _service = Service::start(&bed, PORT).expect("echo service");
    // --verbose: a packet of an unknown key is refused at debug level
    // (floods of them are noise), and this test needs to see it.
    let daemon = start_daemon(&mut bed, &both, &["--verbose"]);
    let server = Testbed::addr(Side::Server, false);
    let client = Testbed::addr(Side::Client, false).to_string();
    let knock_with = |key: &Path| knock_with_key(&bed, key);
    knock_with(&phone);
    assert_opens(&bed, server, PORT);
    // Revoke the phone: remove it from the door, reload, and cut its grant.
    reload(
        &bed,
        &daemon,
        &format!("{}{}", door_head(&dir, ""), user("laptop", &laptop)),
    );
    revoke(&daemon, &client);
    assert_closes(&bed, server, PORT, Duration::from_secs(1));
    only_the_second_opens(&bed, &daemon, (&phone, &["unknown_key"]), &laptop);
}

#[test]
fn with_follow_the_grant_moves_when_the_clients_address_changes() {
    let mut bed = testbed_or_skip!("roam");
    let dir = bed.scratch();
    let (key, daemon, _service) = phone_door(&mut bed, "roaming = true\n");
    let server = Testbed::addr(Side::Server, false);
    let (first, second): (IpAddr, IpAddr) = (Testbed::addr(Side::Client, false), CLIENT2_V4.into());
    let client = client_config(&dir, &server.to_string(), &key);
    // A session that lives 20 s (bounded), started with --follow.
    let log = start_session(&mut bed, &client, &["--follow"], 20);
    daemon.log.expect(
        &["door opened", &first.to_string()],
        Duration::from_secs(5),
        "the session's first knock",
    );
    assert!(connects_from(&bed, first, server, PORT));
    // The client moves: its route to the server now leaves from the
    // second address (what a new network does to a phone).
    let out = bed
        .command(Side::Client, "ip")
        .args(["route", "replace", "198.18.0.0/24", "dev", "sesame1", "src"])
        .arg(second.to_string())
        .output()
        .unwrap();
    assert_success(&out, "ip route replace");
    log.expect(
        &["knocked again", &format!("-> {second}")],
        Duration::from_secs(5),
        "sesame exec --follow saw the move",
    );
    daemon.log.expect(
        &["door opened", &second.to_string()],
        Duration::from_secs(5),
        "the grant for the new address",
    );
    daemon.log.expect(
        &[&first.to_string(), "moved to"],
        Duration::from_secs(5),
        "the old address's grant revoked",
    );
    let set = nft(&bed, &["list", "set", "inet", "sesame", "grants4"]);
    assert!(set.contains(&second.to_string()), "{set}");
    assert!(!set.contains(&format!("{first} ")), "{set}");
    assert!(connects_from(&bed, second, server, PORT));
    assert!(
        !connects_from(&bed, first, server, PORT),
        "the old address is still open"
    );
}

/// Removes `/etc/netns/NAME` (a hosts file for one namespace) on drop.
struct NetnsEtc(PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn knock_both_opens_for_the_clients_ipv4_and_ipv6_addresses() {
    let mut bed = testbed_or_skip!("both");
    let dir = bed.scratch();
    let (key, _daemon, _service) = phone_door(&mut bed, "");
    let (v4, v6) = (
        Testbed::addr(Side::Server, false),
        Testbed::addr(Side::Server, true),
    );
    // A name with both an A and an AAAA record, for the client namespace
    // only (`ip netns exec` mounts /etc/netns/NAME/hosts over /etc/hosts).
    let etc = NetnsEtc(PathBuf::from("/etc/netns").join(&bed.client));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(
        etc.0.join("hosts"),
        format!("{v4} srv.test\n{v6} srv.test\n"),
    )
    .unwrap();
    let client = client_config(&dir, "srv.test", &key);
    let config = client.to_str().unwrap();
    // One family only with -6: IPv4 stays closed.
    knock_from_client(&bed, &["srv", "ssh", "-6", "--config", config]);
    assert_opens(&bed, v6, PORT);
    assert_closes(&bed, v4, PORT, Duration::from_millis(300));
    knock_from_client(&bed, &["srv", "ssh", "--both", "--config", config]);
    assert_opens(&bed, v4, PORT);
    assert_opens(&bed, v6, PORT);
}

#[test]
fn a_session_refreshes_its_grant_before_it_expires() {
    let mut bed = testbed_or_skip!("refresh");
    let dir = bed.scratch();
    let key = dir.join("phone.key");
    keygen("spa", &key);
    // Grants of 3 s: without a refresh the door closes during the session.
    let config = format!(
        "[daemon]\nstate_dir = \"{}\"\n[door.ssh]\nspa_port = 62201\nopen_for = \"3s\"\n\
         protect = [\"tcp/{PORT}\"]\n[door.ssh.users.phone]\nkey = \"{}\"\n",
        dir.join("state").display(),
        key.display()
    );
    let _service = Service::start(&bed, PORT).expect("echo service");
    let daemon = start_daemon(&mut bed, &config, &[]);
    let server = Testbed::addr(Side::Server, false);
    let client = client_config(&dir, &server.to_string(), &key);
    // The profile asks for 3 s: sesame refreshes every 2 s by itself.
    let mut text = std::fs::read_to_string(&client).unwrap();
    text.push_str("duration = \"3s\"\n");
    std::fs::write(&client, text).unwrap();
    let log = start_session(&mut bed, &client, &[], 12);
    // Twice the grant's lifetime later, the door is still open for it.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        connects_from(&bed, Testbed::addr(Side::Client, false), server, PORT),
        "the grant lapsed during the session"
    );
    log.expect(
        &["knocked again (refresh)"],
        Duration::from_secs(1),
        "sesame exec refreshed",
    );
    daemon.log.expect(
        &["event=\"refresh\""],
        Duration::from_secs(1),
        "the daemon saw a refresh",
    );
}
