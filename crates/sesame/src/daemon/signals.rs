//! Signals reach the `poll()` loop through self-pipes.

use std::os::unix::net::UnixStream;

use super::error::{os, DaemonError};

/// Self-pipes the signal handlers write to; the loop polls the read ends.
pub(crate) struct SignalPipes {
    pub(crate) terminate: UnixStream,
    pub(crate) hangup: UnixStream,
    pub(crate) child: UnixStream,
}

impl SignalPipes {
    pub(crate) fn install() -> Result<Self, DaemonError> {
        use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
        use signal_hook::low_level::pipe;
        let pair = || UnixStream::pair().map_err(os("signal pipe"));
        let (terminate, term_w) = pair()?;
        let (hangup, hup_w) = pair()?;
        let (child, chld_w) = pair()?;
        for s in [&terminate, &hangup, &child] {
            s.set_nonblocking(true).map_err(os("signal pipe"))?;
        }
        let reg = |sig, w: &UnixStream| -> Result<(), DaemonError> {
            let w = w.try_clone().map_err(os("signal pipe"))?;
            pipe::register(sig, w)
                .map(drop)
                .map_err(os("signal handler"))
        };
        reg(SIGTERM, &term_w)?;
        reg(SIGINT, &term_w)?;
        reg(SIGHUP, &hup_w)?;
        reg(SIGCHLD, &chld_w)?;
        Ok(SignalPipes {
            terminate,
            hangup,
            child,
        })
    }
}

/// Empties a non-blocking signal pipe; true if anything was pending.
pub(crate) fn drain(mut s: &UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    let mut got = false;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got = true;
    }
    got
}
