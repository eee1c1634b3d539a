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
