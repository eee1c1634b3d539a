//! `sesame`: the Sesame client and admin CLI (see [`sesame::cli`]).

use std::process::ExitCode;

use clap::Parser;
use sesame::cli::{run, Cli};

fn main() -> ExitCode {
    if let Some(code) =
        sesame::docs::from_env("sesame", <Cli as clap::CommandFactory>::command, "1")
    {
        return code;
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesame: {e}");
            ExitCode::FAILURE
        }
    }
}
