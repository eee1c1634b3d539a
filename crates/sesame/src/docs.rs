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
    let mut written = vec![write_page(
        &cmd,
        &name,
        section,
        extra_sections(&name),
        &man,
    )?];
    // One page per subcommand (`sesame-knock(1)`, ...), as SEE ALSO and
    // the subcommand list promise.
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let page = format!("{name}-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(page.clone())
            .bin_name(format!("{name} {}", sub.get_name()));
        let see_also = format!(".SH \"SEE ALSO\"\n.BR {name} ({section})\n");
        written.push(write_page(&sub, &page, section, &see_also, &man)?);
    }
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

/// Writes `dir/NAME.SECTION`: clap's sections (name, synopsis,
/// description, options, subcommands), then `extra` (raw roff), then the
/// version.
fn write_page(
    cmd: &clap::Command,
    name: &str,
    section: &str,
    extra: &str,
    dir: &Path,
) -> std::io::Result<PathBuf> {
    let man = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .manual("Sesame");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut out)?;
    }
    out.extend_from_slice(extra.as_bytes());
    // clap_mangen panics on a command without a version.
    if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
        man.render_version_section(&mut out)?;
    }
    let path = dir.join(format!("{name}.{section}"));
    std::fs::write(&path, out)?;
    Ok(path)
}

/// The sections a sysadmin expects beyond `--help`, per binary (roff).
fn extra_sections(name: &str) -> &'static str {
    match name {
        "sesamed" => SESAMED_SECTIONS,
        "sesame" => SESAME_SECTIONS,
        _ => "",
    }
}

const SESAMED_SECTIONS: &str = r#".SH FILES
.TP
.B /etc/sesame/sesame.toml
The configuration (root:sesame, 0640); see \fBsesame.toml\fR(5).
.TP
.B /etc/sesame/keys/
Key files, owned by the service user, mode 0600.
.TP
.B /var/lib/sesame/
The persisted replay cache (SPA, TOTP and fwknop doors).
.TP
.B /run/sesame/control.sock
The control socket of \fBsesame status\fR, \fBgrants\fR, \fBrevoke\fR, \fBopen\fR, \fBunban\fR and \fBreload\fR.
.TP
.B /usr/lib/systemd/system/sesamed.service
The unit: runs as user sesame with CAP_NET_ADMIN only.
.SH SIGNALS
.TP
.B SIGHUP
Re-read the configuration (as \fBsesame reload\fR). An invalid file is refused, logged as event="reload_failed", and the running configuration stays in force.
.TP
.BR SIGTERM ", " SIGINT
Stop. The nftables table stays, so protected ports stay closed; grants keep their kernel timeouts and pending on_close commands run before exit. A restart takes the table and its grants over.
.SH "EXIT STATUS"
0 after a clean stop, or when \fB\-\-check\-config\fR found the file valid (warnings go to standard error) or \fB\-\-remove\fR succeeded. 1 on any error: an invalid configuration (the message names file, line, column and item), a key file the service user cannot read, missing privileges, or a failure to install the table. sesamed reads every key file before it touches the firewall, so a failed start never leaves protected ports closed without a daemon.
.SH EXAMPLES
.nf
sesamed \-\-check\-config /etc/sesame/sesame.toml \-\-user sesame
systemctl enable \-\-now sesamed
journalctl \-u sesamed AUDIT=1
sesamed \-\-knockd\-config /etc/knockd.conf
sesamed \-\-fwknop\-access /etc/fwknop/access.conf \-\-fwknopd\-conf /etc/fwknop/fwknopd.conf
sesamed \-\-remove
.fi
.SH "SEE ALSO"
.BR sesame (1),
.BR sesame.toml (5),
.BR nft (8),
.BR systemd.exec (5);
/usr/share/doc/sesame/README.md and SECURITY.md
"#;

const SESAME_SECTIONS: &str = r#".SH FILES
.TP
.B ~/.config/sesame/client.toml
Client profiles: servers and their doors (\fBsesame knock SERVER DOOR\fR).
.TP
.B /run/sesame/control.sock
The daemon's control socket (admin commands; \fB\-\-socket\fR to change).
.SH "EXIT STATUS"
0 on success; 1 on any error, with a message that names the offending argument, file or door.
.SH EXAMPLES
.nf
sesame keygen spa ~/.config/sesame/ssh.key
sesame knock server.example \-\-spa\-key ~/.config/sesame/ssh.key
sesame knock server.example 7000 8000:udp 9000
sesame knock server.example ssh
sesame status
sesame revoke 203.0.113.7
.fi
.SH "SEE ALSO"
.BR sesame\-knock (1),
.BR sesame\-sequence (1),
.BR sesame\-keygen (1),
.BR sesame\-demo (1),
.BR sesame\-import (1),
.BR sesame\-status (1),
.BR sesame\-grants (1),
.BR sesame\-revoke (1),
.BR sesame\-unban (1),
.BR sesame\-open (1),
.BR sesame\-reload (1),
.BR sesamed (8),
.BR sesame.toml (5)
"#;

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

    fn cmd_named(name: &'static str) -> clap::Command {
        clap::Command::new(name).about("x")
    }

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
        let _ = std::fs::remove_dir_all(&dir);
        let files = generate(
            clap::Command::new("sesame").subcommand(clap::Command::new("knock").about("Knock.")),
            "1",
            &dir,
        )
        .unwrap();
        let knock = std::fs::read_to_string(dir.join("man/sesame-knock.1")).unwrap();
        assert!(knock.contains(".BR sesame (1)"), "{knock}");
        assert!(files.len() == 5, "{files:?}");
        let main = std::fs::read_to_string(dir.join("man/sesame.1")).unwrap();
        assert!(
            main.contains("EXIT STATUS") && main.contains("sesame\\-knock (1)"),
            "{main}"
        );
        let files = generate(cmd_named("sesamed"), "8", &dir).unwrap();
        let daemon = std::fs::read_to_string(&files[0]).unwrap();
        for section in ["FILES", "SIGNALS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"] {
            assert!(daemon.contains(section), "{section}: {daemon}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
