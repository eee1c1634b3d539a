//! The client crate builds for the platforms people knock from: `cargo
//! check` for macOS, Windows and Android (their standard libraries come
//! from `rustup target add`, which `.ci/run` does). It checks in its own
//! target folder, so it never waits on the lock of the build running the
//! tests. Under `CI=true` a missing target is a failure, never a skip.

use std::path::Path;
use std::process::Command;

const TARGETS: [&str; 4] = [
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-gnu",
    "aarch64-linux-android",
];

#[test]
fn the_client_crate_checks_for_macos_windows_and_android() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let missing: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        assert!(
            !ci,
            "CI=true but these targets are not installed: {missing:?} (rustup target add ...)"
        );
        eprintln!("skipped: rustup target add {}", missing.join(" "));
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for target in TARGETS {
        let out = Command::new("timeout")
            .arg("900")
            .arg(&cargo)
            .args([
                "check",
                "--locked",
                "-p",
                "sesame-client",
                "--target",
                target,
            ])
            .current_dir(&repo)
            .env("CARGO_TARGET_DIR", repo.join("target/cross-check"))
            .output()
            .expect("run cargo check");
        assert!(
            out.status.success(),
            "cargo check -p sesame-client --target {target} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
