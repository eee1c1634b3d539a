//! The C ABI (`crates/sesame-ffi`) as apps use it: its C example, compiled
//! with the system's C compiler against the static library, knocks an SPA
//! door in a namespace; and the same example built for Windows with
//! Debian's mingw-w64 and run under wine makes byte for byte the packet
//! the Linux build makes, and knocks the door from the client namespace;
//! so does the `sesame` client itself, built for Windows.
//!
//! Under `CI=true` a missing compiler or wine is a failure (`.ci/run`
//! installs gcc-mingw-w64-x86-64 and wine64), never a skip.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use sesame::testbed::{Side, Testbed};
use sesame_testkit::proc::{ci, find_program, run_bounded};
use support::*;

/// The protected service.
const PORT: u16 = 2222;

/// Debian's wine64 (not on PATH).
const WINE: &str = "/usr/lib/wine/wine64";

static ONE_BUILD_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ffi() -> PathBuf {
    repo().join("crates/sesame-ffi")
}

/// `cargo build ARGS` in `target/ffi` (its own folder, so it never waits
/// on the lock of the build running the tests), one build at a time;
/// returns that folder.
fn cargo_build(args: &[&str]) -> PathBuf {
    let _turn = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let dir = repo().join("target/ffi");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--locked"])
        .args(args)
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", &dir);
    let out = run_bounded(cmd, Duration::from_secs(900));
    assert_success(&out, format!("cargo build {}", args.join(" ")));
    dir
}

/// The C ABI's static library, for `target` (default: this host).
fn static_library(target: Option<&str>) -> PathBuf {
    match target {
        Some(t) => cargo_build(&["-p", "sesame-ffi", "--target", t])
            .join(t)
            .join("debug/libsesame_ffi.a"),
        None => cargo_build(&["-p", "sesame-ffi"]).join("debug/libsesame_ffi.a"),
    }
}

/// The `sesame` client built for Windows: `sesame.exe`.
fn windows_client() -> PathBuf {
    let target = "x86_64-pc-windows-gnu";
    cargo_build(&["-p", "sesame", "--bin", "sesame", "--target", target])
        .join(target)
        .join("debug/sesame.exe")
}

/// Makes the `bcryptprimitives.dll` stand-in in `dir`: Debian 12's wine
/// lacks the DLL where Rust's standard library finds ProcessPrng (see
/// tests/wine/bcryptprimitives.c); wine looks next to the .exe first.
fn wine_prng_shim(dir: &Path) {
    let mut cmd = Command::new("x86_64-w64-mingw32-gcc");
    cmd.args(["-shared", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(ffi().join("tests/wine/bcryptprimitives.c"))
        .arg("-ladvapi32");
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_success(&out, "the bcryptprimitives.dll stand-in");
}

/// Runs `exe ARGS` under wine in the client namespace, with a prefix of
/// its own in `dir` (so its wineserver, which makes the sockets, starts in
/// the namespace too).
fn wine(bed: &Testbed, dir: &Path, exe: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = bed.command(Side::Client, WINE);
    cmd.arg(exe)
        .args(args)
        .current_dir(dir)
        .env("WINEPREFIX", dir.join("wineprefix"))
        .env("WINEDEBUG", "-all");
    run_bounded(cmd, Duration::from_secs(120))
}

/// Stops the prefix's wineserver.
fn stop_wine(bed: &Testbed, dir: &Path) {
    let _ = bed
        .command(Side::Client, "/usr/lib/wine/wineserver")
        .arg("-k")
        .env("WINEPREFIX", dir.join("wineprefix"))
        .output();
}

/// The knock behind `out` succeeded and opened the door for alice.
#[track_caller]
fn assert_knock_opened(bed: &Testbed, daemon: &Daemon, out: &std::process::Output, what: &str) {
    assert_success(out, what);
    assert_opens(bed, Testbed::addr(Side::Server, false), PORT);
    daemon.log.expect(
        &["spa_accepted", "user alice"],
        Duration::from_secs(2),
        what,
    );
}

/// Compiles `examples/knock.c` with `compiler` into `out`.
fn compile_example(compiler: &str, library: &Path, out: &Path, libs: &[&str]) {
    let out = run_bounded(
        {
            let mut cmd = Command::new(compiler);
            cmd.args(["-Wall", "-Wextra", "-Werror", "-o"])
                .arg(out)
                .arg(ffi().join("examples/knock.c"))
                .arg("-I")
                .arg(ffi().join("include"))
                .arg(library)
                .args(libs);
            cmd
        },
        Duration::from_secs(120),
    );
    assert_success(&out, format!("{compiler} examples/knock.c"));
}

/// Whether `program` exists; under CI=true it must.
fn have(program: &str) -> bool {
    let found = Path::new(program).is_absolute() && Path::new(program).exists()
        || find_program(program).is_some();
    assert!(
        found || !ci(),
        "CI=true but {program} is missing (.ci/run installs it)"
    );
    if !found {
        eprintln!("skipped: {program} is not installed");
    }
    found
}

#[test]
fn the_c_example_knocks_an_spa_door_through_the_c_abi() {
    if !have("cc") {
        return;
    }
    let mut bed = testbed_or_skip!("cabi");
    let dir = bed.scratch();
    let example = dir.join("knock");
    compile_example(
        "cc",
        &static_library(None),
        &example,
        &["-lpthread", "-ldl", "-lm"],
    );
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = spa_door_and_client(&mut bed, false);
    let server = Testbed::addr(Side::Server, false);
    assert_closes(&bed, server, PORT, Duration::from_millis(300));
    // A bad door is refused with a message that names it.
    let out = bed
        .command(Side::Client, example.to_str().unwrap())
        .arg(&client)
        .args(["srv", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    let out = bed
        .command(Side::Client, example.to_str().unwrap())
        .arg(&client)
        .args(["srv", "ssh"])
        .output()
        .unwrap();
    assert_knock_opened(&bed, &daemon, &out, "knock (C example)");
}

#[test]
fn a_windows_build_makes_the_same_packet_under_wine_and_opens_the_door() {
    if !have("cc") || !have("x86_64-w64-mingw32-gcc") || !have(WINE) {
        return;
    }
    let mut bed = testbed_or_skip!("wine");
    let dir = bed.scratch();
    let (linux, windows) = (dir.join("knock"), dir.join("knock.exe"));
    compile_example(
        "cc",
        &static_library(None),
        &linux,
        &["-lpthread", "-ldl", "-lm"],
    );
    compile_example(
        "x86_64-w64-mingw32-gcc",
        &static_library(Some("x86_64-pc-windows-gnu")),
        &windows,
        &["-lws2_32", "-luserenv", "-lntdll", "-lbcrypt"],
    );
    wine_prng_shim(&dir);
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = spa_door_and_client(&mut bed, false);
    let server = Testbed::addr(Side::Server, false);
    let config = client.to_str().unwrap();
    let fixed = ["--fixed", config, "srv", "ssh", "1800000000"];
    let native = Command::new(&linux).args(fixed).output().unwrap();
    assert_success(&native, "knock --fixed (Linux)");
    let under_wine = wine(&bed, &dir, &windows, &fixed);
    assert_success(&under_wine, "knock.exe --fixed (wine)");
    let hex = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(hex(&native).len() > 100, "{}", hex(&native));
    assert_eq!(
        hex(&under_wine),
        hex(&native),
        "the Windows build made another packet"
    );
    // And a real knock from the Windows build opens the door.
    assert_closes(&bed, server, PORT, Duration::from_millis(300));
    let knocked = wine(&bed, &dir, &windows, &[config, "srv", "ssh"]);
    assert_knock_opened(&bed, &daemon, &knocked, "knock.exe (wine)");
    stop_wine(&bed, &dir);
}

#[test]
fn the_sesame_client_built_for_windows_knocks_under_wine() {
    if !have("x86_64-w64-mingw32-gcc") || !have(WINE) {
        return;
    }
    let mut bed = testbed_or_skip!("winsesame");
    let dir = bed.scratch();
    let exe = dir.join("sesame.exe");
    std::fs::copy(windows_client(), &exe).expect("copy sesame.exe");
    wine_prng_shim(&dir);
    let _service = Service::start(&bed, PORT).expect("echo service");
    let (client, daemon) = spa_door_and_client(&mut bed, false);
    let server = Testbed::addr(Side::Server, false);
    let config = client.to_str().unwrap();
    // The admin commands are Linux-only: they do not exist here.
    let out = wine(&bed, &dir, &exe, &["status"]);
    assert!(!out.status.success());
    // A dry run shows the packet and sends nothing.
    let dry = ["knock", "--dry-run", "srv", "ssh", "--config", config];
    let out = wine(&bed, &dir, &exe, &dry);
    assert_success(&out, "sesame.exe knock --dry-run");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("dry run: nothing sent") && shown.contains("hex:"),
        "{shown}"
    );
    assert_closes(&bed, server, PORT, Duration::from_millis(300));
    let out = wine(
        &bed,
        &dir,
        &exe,
        &["knock", "srv", "ssh", "--config", config],
    );
    assert_knock_opened(&bed, &daemon, &out, "sesame.exe knock");
    stop_wine(&bed, &dir);
}
