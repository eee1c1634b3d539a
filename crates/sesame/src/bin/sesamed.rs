//! `sesamed`: the Sesame port-knocking daemon (see [`sesame::daemon::cli`]).

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    sesame::daemon::cli::main()
}

/// sesamed observes packets and drives the firewall through Linux netlink.
#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "sesamed: runs on Linux only (netlink: NFLOG and nf_tables); the sesame client runs here"
    );
    std::process::ExitCode::FAILURE
}
