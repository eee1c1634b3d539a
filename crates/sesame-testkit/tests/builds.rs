//! Builds that `cargo test --workspace` does not do by itself, checked so
//! that they cannot break unnoticed:
//! - the portable client for macOS, Windows and Android: the client crate,
//!   the `sesame` command (its client commands; the daemon and admin
//!   commands are Linux-only) and the C ABI (their standard libraries come
//!   from `rustup target add`, which `.ci/run` does); under `CI=true` a
//!   missing target is a failure, never a skip;
//! - the fuzz targets (`fuzz/`, a workspace of its own), which a refactor
//!   once broke without anyone noticing. libfuzzer-sys's build script needs
//!   a C++ compiler (`g++`, which `.ci/run` installs).
//!
//! Each check runs `cargo check` in a target folder of its own, so it never
//! waits on the lock of the build running the tests, and one at a time, so
//! two cargo builds never share the machine's two cores.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sesame_testkit::proc::{assert_success, ci};

/// The platforms the portable client must build for.
const TARGETS: [&str; 4] = [
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-gnu",
    "aarch64-linux-android",
];

static ONE_BUILD_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `cargo check ARGS` at the repository root, in `target/TARGET_DIR`, with
/// a 15-minute limit; panics with cargo's output when it fails.
fn cargo_check(args: &[&str], target_dir: &str) {
    let _turn = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new("timeout")
        .arg("900")
        .arg(&cargo)
        .args(["check", "--locked"])
        .args(args)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", repo().join("target").join(target_dir))
        .output()
        .expect("run cargo check");
    assert_success(&out, format!("cargo check {}", args.join(" ")));
}

#[test]
fn the_client_builds_for_macos_windows_and_android() {
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
            !ci(),
            "CI=true but these targets are not installed: {missing:?} (rustup target add ...)"
        );
        eprintln!("skipped: rustup target add {}", missing.join(" "));
        return;
    }
    for target in TARGETS {
        let packages = [
            "-p",
            "sesame-client",
            "-p",
            "sesame-ffi",
            "-p",
            "sesame",
            "--lib",
            "--bin",
            "sesame",
        ];
        cargo_check(
            &[&packages[..], &["--target", target]].concat(),
            "cross-check",
        );
    }
}

#[test]
fn the_fuzz_targets_build() {
    let manifest = repo().join("fuzz/Cargo.toml");
    cargo_check(
        &["--bins", "--manifest-path", manifest.to_str().unwrap()],
        "fuzz-check",
    );
}
