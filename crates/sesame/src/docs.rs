//! Man pages and shell completions generated from the CLI definitions
//! (`clap_mangen`, `clap_complete`). Either binary writes its own when run
//! with `SESAME_GENERATE_DOCS=DIR`: `DIR/man/NAME.SECTION` and
//! `DIR/completions/{NAME.bash,_NAME,NAME.fish}`. `packaging/gen-docs.sh`
//! does both; the Debian package ships the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// The environment variable that asks a binary for its docs.
pub const ENV: &str = "SESAME_GENERATE_DOCS";

/// Writes the man page (in `section`) and the bash, zsh and fish
/// completions of `cmd` under `dir`; returns the files written.
pub fn generate(
    mut cmd: clap::Command,
    section: &str,
    dir: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_string();
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = vec![clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("Sesame")
        .generate_to(&man)?];
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            &name,
            &completions,
        )?);
    }
    Ok(written)
}

/// For a binary's `main`: when [`ENV`] is set, writes the docs of `cmd`
/// (named `name`: clap would use the package name) and returns the exit
/// code; otherwise `None`.
pub fn from_env(
    name: &'static str,
    cmd: impl FnOnce() -> clap::Command,
    section: &str,
) -> Option<ExitCode> {
    let dir = std::env::var_os(ENV)?;
    let cmd = cmd().name(name).bin_name(name);
    Some(match generate(cmd, section, Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{ENV}: {e}");
            ExitCode::FAILURE
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_man_page_and_three_completions() {
        let dir = std::env::temp_dir().join(format!("sesame-docs-{}", std::process::id()));
        let cmd = clap::Command::new("demo")
            .about("A demo.")
            .arg(clap::Arg::new("config").long("config").help("Config file."));
        let files = generate(cmd, "8", &dir).unwrap();
        assert_eq!(files.len(), 4);
        let man = std::fs::read_to_string(dir.join("man/demo.8")).unwrap();
        assert!(man.contains(".TH demo 8"), "{man}");
        assert!(man.contains("config"), "{man}");
        for f in ["demo.bash", "_demo", "demo.fish"] {
            assert!(dir.join("completions").join(f).is_file(), "{f}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
