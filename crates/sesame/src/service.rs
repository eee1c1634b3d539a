//! systemd integration: `Type=notify` readiness, stopping and watchdog
//! notifications through `sd-notify`. Every function is a no-op when the
//! daemon was not started by systemd (no `NOTIFY_SOCKET`), and a failed
//! notification is never fatal.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(state: &[NotifyState]) {
    // unset_env = false: later notifications need the variable too.
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(event = "sd_notify", "sd_notify failed: {e}");
    }
}

/// Whether the process runs as a systemd service (notify socket, journal
/// stream or invocation id set by the service manager).
pub fn under_systemd() -> bool {
    ["NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

/// `READY=1`: call once setup is complete, right before the event loop.
pub fn notify_ready() {
    send(&[
        NotifyState::Ready,
        NotifyState::Status("waiting for knocks"),
    ]);
}

/// `STOPPING=1`: call when the daemon begins shutting down.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any and if
/// meant for this process (`WATCHDOG_PID`). Read once.
pub fn watchdog_interval() -> Option<Duration> {
    static INTERVAL: OnceLock<Option<Duration>> = OnceLock::new();
    *INTERVAL.get_or_init(|| {
        let mut usec = 0u64;
        (sd_notify::watchdog_enabled(false, &mut usec) && usec > 0)
            .then(|| Duration::from_micros(usec))
    })
}

/// `WATCHDOG=1`, unconditionally.
pub fn notify_watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Whether a ping is due: never pinged, or half the interval has passed
/// since the last one (systemd's recommendation).
pub fn watchdog_due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= interval / 2)
}

/// Sends `WATCHDOG=1` when the watchdog is enabled and a ping is due. Cheap
/// enough to call on every turn of the event loop (which wakes at least once
/// a second): a stuck loop then stops the pings and systemd restarts the
/// daemon.
pub fn notify_watchdog_if_due() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if watchdog_due(*last, now, interval) {
        *last = Some(now);
        notify_watchdog();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_interval() {
        let t0 = Instant::now();
        let iv = Duration::from_secs(30);
        assert!(watchdog_due(None, t0, iv));
        assert!(!watchdog_due(Some(t0), t0 + Duration::from_secs(14), iv));
        assert!(watchdog_due(Some(t0), t0 + Duration::from_secs(15), iv));
    }

    #[test]
    fn notifications_reach_the_socket() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("sesame-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).unwrap();
        // Only this test sets NOTIFY_SOCKET in this test binary.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_ready();
        notify_stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.contains("READY=1"), "{got}");
        let n = sock.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .contains("STOPPING=1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
