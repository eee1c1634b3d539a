//! Command-line behaviour that needs no privileges.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String, String) {
    let path = match bin {
        "sesamed" => env!("CARGO_BIN_EXE_sesamed"),
        _ => env!("CARGO_BIN_EXE_sesame"),
    };
    let out = Command::new(path).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sesame.toml");
    let (ok, stdout, stderr) = run("sesamed", &["--check-config", example]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("OK, 2 door(s): admin, ssh"), "{stdout}");
}

#[test]
fn check_config_names_file_line_and_item() {
    let dir = std::env::temp_dir().join(format!("sesame-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[door.ssh]\nprotect = [\"tcp/22\"]\nsequence = [\"7000\", \"99999\"]\n",
    )
    .unwrap();
    let (ok, _, stderr) = run("sesamed", &["--check-config", path.to_str().unwrap()]);
    assert!(!ok);
    let expected = format!("{}:3:", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("sequence[1] \"99999\""), "{stderr}");
    let (ok, _, stderr) = run("sesamed", &["--check-config", "/nonexistent/sesame.toml"]);
    assert!(!ok);
    assert!(
        stderr.contains("/nonexistent/sesame.toml: cannot read config"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn knock_rejects_bad_ports_with_their_position() {
    let (ok, _, stderr) = run("sesame", &["knock", "127.0.0.1", "7000", "80000"]);
    assert!(!ok);
    assert!(stderr.contains("knock 2 \"80000\""), "{stderr}");
    let (ok, _, stderr) = run("sesame", &["knock", "127.0.0.1", "7000:icmp"]);
    assert!(!ok);
    assert!(stderr.contains("invalid protocol"), "{stderr}");
    let (ok, _, stderr) = run("sesame", &["knock", "-4", "::1", "7000"]);
    assert!(!ok);
    assert!(stderr.contains("no IPv4 address"), "{stderr}");
}

#[test]
fn knock_uses_a_client_profile() {
    let dir = std::env::temp_dir().join(format!("sesame-prof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let path = dir.join("client.toml");
    std::fs::write(
        &path,
        format!(
            "[server.local]\nhost = \"127.0.0.1\"\ndoor.test = [\"{port}:udp\", \"{port}:udp\"]\n"
        ),
    )
    .unwrap();
    let (ok, _, stderr) = run(
        "sesame",
        &["knock", "--config", path.to_str().unwrap(), "local", "test"],
    );
    assert!(ok, "{stderr}");
    let mut buf = [0u8; 4];
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    let (ok, _, stderr) = run(
        "sesame",
        &["knock", "--config", path.to_str().unwrap(), "local", "nope"],
    );
    assert!(!ok);
    assert!(stderr.contains("no door \"nope\""), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn knock_one_time_sends_the_first_unused_line_then_marks_it() {
    let dir = std::env::temp_dir().join(format!("sesame-ots-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let port = rx.local_addr().unwrap().port();
    let path = dir.join("knockd.ots");
    let file = path.to_str().unwrap();
    std::fs::write(
        &path,
        format!("# pad\n#1,2\n {port}:udp, {port}:udp\n {port}:udp\n"),
    )
    .unwrap();

    let (ok, stdout, stderr) = run("sesame", &["knock", "-v", "--one-time", file, "127.0.0.1"]);
    assert!(ok, "{stderr}");
    let mut buf = [0u8; 4];
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    assert!(
        stdout.contains(":3 used; 1 unused sequence(s) left"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("# pad\n#1,2\n#{port}:udp, {port}:udp\n {port}:udp\n")
    );

    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(ok, "{stderr}");
    assert_eq!(rx.recv(&mut buf).unwrap(), 1);
    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains("no unused sequence left"), "{stderr}");

    // A failed knock does not use the line up.
    std::fs::write(&path, format!(" {port}:udp\n")).unwrap();
    let (ok, _, stderr) = run("sesame", &["knock", "-6", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains("no IPv6 address"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!(" {port}:udp\n")
    );

    // Junk in the file names file:line and the item.
    std::fs::write(&path, " 7000\n 70x0\n").unwrap();
    let (ok, _, stderr) = run("sesame", &["knock", "--one-time", file, "127.0.0.1"]);
    assert!(!ok);
    assert!(stderr.contains(&format!("{file}:2:")), "{stderr}");
    assert!(stderr.contains("\"70x0\""), "{stderr}");

    // Ports and --one-time exclude each other.
    let (ok, _, _) = run(
        "sesame",
        &["knock", "--one-time", file, "127.0.0.1", "7000"],
    );
    assert!(!ok);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn import_knockd_prints_sesame_toml() {
    let dir = std::env::temp_dir().join(format!("sesame-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("knockd.conf");
    std::fs::write(
        &path,
        "[options]\n\tUseSyslog\n\n[openSSH]\n\tsequence    = 7000,8000,9000\n\tseq_timeout = 5\n\tcommand     = /sbin/iptables -A INPUT -s %IP% -p tcp --dport 22 -j ACCEPT\n\ttcpflags    = syn\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run("sesame", &["import", "knockd", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[door.openSSH]"), "{stdout}");
    assert!(
        stdout.contains("sequence = [\"7000\", \"8000\", \"9000\"]"),
        "{stdout}"
    );
    assert!(stdout.contains("on_open_shell = "), "{stdout}");

    // The output is a config sesamed accepts.
    let out = dir.join("sesame.toml");
    std::fs::write(&out, &stdout).unwrap();
    let (ok, stdout, stderr) = run("sesamed", &["--check-config", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("openSSH"), "{stdout}");

    std::fs::write(&path, "[openSSH]\nsequence = 7000,70x0\ncommand = x\n").unwrap();
    let (ok, stdout, stderr) = run("sesame", &["import", "knockd", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{}:2: [openSSH] sequence item 2 \"70x0\"",
            path.display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
