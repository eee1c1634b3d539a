//! The Debian package under real systemd: `packaging/test-systemd.sh`
//! builds the package from this build's binaries, boots a Debian 12
//! container (systemd-nspawn on a cached debootstrap root), runs the
//! README's quick start literally and checks the unit's promises (see the
//! script). Needs root, debootstrap and systemd-nspawn; under `CI=true`
//! their absence fails the test.

use std::path::Path;
use std::process::Command;

fn missing_tools() -> Vec<&'static str> {
    ["debootstrap", "systemd-nspawn", "dpkg-deb", "nsenter", "ip"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect()
}

#[test]
fn the_package_boots_under_systemd_and_keeps_its_promises() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let root = nix::unistd::geteuid().is_root();
    let missing = missing_tools();
    if !root || !missing.is_empty() {
        let why = if root {
            format!("missing {}", missing.join(", "))
        } else {
            "needs root".to_string()
        };
        assert!(
            !ci,
            "CI=true but the systemd container test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let bins = Path::new(env!("CARGO_BIN_EXE_sesamed")).parent().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/test-systemd.sh"
    );
    // The script bounds every wait itself; this is the outer limit.
    let out = Command::new("timeout")
        .args(["--kill-after=10", "600", "bash", script])
        .arg(bins)
        .output()
        .expect("run packaging/test-systemd.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("systemd container test: OK"),
        "packaging/test-systemd.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
