//! `packaging/release.sh`: static musl binaries for x86_64 and aarch64 and a
//! Debian package of each, from one command. The x86_64 pair must run the
//! demo (as root); the aarch64 pair must link into aarch64 executables.
//! It builds in its own target folder (target/release-build), so it never
//! waits on the lock of the build running the tests.

use std::path::Path;
use std::process::Command;

/// ELF e_machine of a binary (62 x86-64, 183 aarch64), and whether it asks
/// for a dynamic loader.
fn elf(path: &Path) -> (u16, bool) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"\x7fELF", "{} is not ELF", path.display());
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let dynamic = bytes.windows(7).any(|w| w == b"ld-linu");
    (machine, dynamic)
}

#[test]
fn one_command_builds_static_binaries_and_packages_per_architecture() {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let have_rustup = Command::new("rustup")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let have_dpkg = Command::new("dpkg-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_rustup || !have_dpkg {
        assert!(!ci, "CI=true but rustup or dpkg-deb is missing");
        eprintln!("skipped: needs rustup and dpkg-deb");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = repo.join("target/release-test-dist");
    let run = Command::new("timeout")
        .args(["1800", "sh", "packaging/release.sh"])
        .arg(&out)
        .current_dir(&repo)
        .env("CARGO_TARGET_DIR", repo.join("target/release-build"))
        .output()
        .expect("run packaging/release.sh");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "release.sh failed:\n{stderr}");
    for deb in ["sesame_0.1.0_amd64.deb", "sesame_0.1.0_arm64.deb"] {
        assert!(out.join(deb).is_file(), "no {deb}:\n{stderr}");
    }
    for (arch, machine) in [("x86_64", 62), ("aarch64", 183)] {
        for bin in ["sesamed", "sesame"] {
            let (m, dynamic) = elf(&out.join(arch).join(bin));
            assert_eq!(m, machine, "{arch}/{bin} is for machine {m}");
            assert!(!dynamic, "{arch}/{bin} asks for a dynamic loader");
        }
    }
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("sesame_0.1.0_arm64.deb"), "{sums}");
    if !nix::unistd::geteuid().is_root() {
        assert!(!ci, "CI=true but not root: the static demo cannot run");
        eprintln!("skipped the static demo: needs root");
        return;
    }
    let demo = Command::new("timeout")
        .args(["120"])
        .arg(out.join("x86_64/sesame"))
        .arg("demo")
        .output()
        .expect("run the static demo");
    let stdout = String::from_utf8_lossy(&demo.stdout);
    assert!(
        demo.status.success() && stdout.contains("Demo complete"),
        "the static x86_64 demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&demo.stderr)
    );
}
