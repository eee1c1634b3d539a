//! The fuzz targets (`fuzz/`, a workspace of their own that `cargo test
//! --workspace` does not build) still compile against today's crates: a
//! refactor once broke them without anyone noticing. `cargo check` in its
//! own target folder, so it never waits on the lock of the build running
//! the tests. libfuzzer-sys's build script needs a C++ compiler (`g++`,
//! which `.ci/run` installs).

use std::path::Path;
use std::process::Command;

#[test]
fn the_fuzz_targets_build() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new("timeout")
        .arg("900")
        .arg(&cargo)
        .args(["check", "--locked", "--bins", "--manifest-path"])
        .arg(repo.join("fuzz/Cargo.toml"))
        .env("CARGO_TARGET_DIR", repo.join("target/fuzz-check"))
        .output()
        .expect("run cargo check");
    assert!(
        out.status.success(),
        "cargo check --manifest-path fuzz/Cargo.toml failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
