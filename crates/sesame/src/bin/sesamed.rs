//! `sesamed`: the Sesame port-knocking daemon (see [`sesame::daemon::cli`]).

fn main() -> std::process::ExitCode {
    sesame::daemon::cli::main()
}
