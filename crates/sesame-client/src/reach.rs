//! Knock, then connect: the one step that `knock && ssh` scripts get wrong.
//!
//! A knock is fire-and-forget (UDP datagrams and SYNs that nothing
//! answers), so on a lossy network it can be lost without a trace. Here the
//! target port itself is the confirmation: after each knock the client
//! tries to connect, and when the port does not answer it knocks again,
//! with growing pauses, a bounded number of times. Pure `std`, so it works
//! on every platform the client builds for.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// How hard [`knock_and_connect`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Knocks at most this many times (at least 1).
    pub attempts: u32,
    /// How long the port may take to answer after a knock; connects are
    /// tried again within it ([`CONNECT_STEP`] each), so a lost SYN does not
    /// cost a knock.
    pub connect_timeout: Duration,
    /// Pause after the first failed attempt; it doubles after each.
    pub first_pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

impl Default for Retry {
    /// 6 knocks, 2 s per connect, pauses of 0.25, 0.5, 1, 2 and 2 s: a
    /// dead server is given up on after about 18 s.
    fn default() -> Self {
        Retry {
            attempts: 6,
            connect_timeout: Duration::from_secs(2),
            first_pause: Duration::from_millis(250),
            max_pause: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// The pause after failed attempt `n` (1-based).
    fn pause(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.first_pause.saturating_mul(factor).min(self.max_pause)
    }
}

/// Why [`knock_and_connect`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// Knocking itself failed (a bad key file, no route, …).
    #[error("knock {attempt}: {message}")]
    Knock {
        /// Which attempt (1-based).
        attempt: u32,
        /// What went wrong.
        message: String,
    },
    /// Every knock went out, and the port never answered.
    #[error(
        "{target} did not answer after {attempts} knock(s): the door did not open (wrong \
         key or sequence, the packets are lost, or the service is down); last error: {last}"
    )]
    NoAnswer {
        /// The port tried.
        target: SocketAddr,
        /// Knocks sent.
        attempts: u32,
        /// The last connect error.
        last: io::Error,
    },
}

/// Knocks with `knock` (given the attempt number, from 1), then connects to
/// `target`; while the port does not answer, waits and knocks again, up to
/// `retry.attempts` times. Returns the connection and the knocks it took.
///
/// A knock may be sent again unchanged only where the door accepts that: a
/// plain sequence, and SPA and TOTP knocks made fresh by `knock` each time
/// (a replayed SPA packet is refused, which is why `knock` is a closure).
pub fn knock_and_connect(
    target: SocketAddr,
    retry: &Retry,
    mut knock: impl FnMut(u32) -> Result<(), String>,
) -> Result<(TcpStream, u32), ReachError> {
    let attempts = retry.attempts.max(1);
    let mut last = io::Error::other("not tried");
    for attempt in 1..=attempts {
        knock(attempt).map_err(|message| ReachError::Knock { attempt, message })?;
        match connect_within(target, retry.connect_timeout) {
            Ok(stream) => return Ok((stream, attempt)),
            Err(e) => last = e,
        }
        if attempt < attempts {
            thread::sleep(retry.pause(attempt));
        }
    }
    Err(ReachError::NoAnswer {
        target,
        attempts,
        last,
    })
}

/// Connects to `target`, trying again for up to `total`. Each try may take
/// [`CONNECT_STEP`]: the first SYN often arrives before the server has
/// opened the door, and a lost SYN is sent again sooner than the kernel's
/// one-second retransmission would.
fn connect_within(target: SocketAddr, total: Duration) -> io::Result<TcpStream> {
    let end = Instant::now() + total;
    let mut last = io::Error::from(io::ErrorKind::TimedOut);
    // Bounded by `end`, and in turns.
    for _ in 0..10_000 {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&target, left.min(CONNECT_STEP)) {
            Ok(stream) => return Ok(stream),
            Err(e) => {
                if e.kind() != io::ErrorKind::TimedOut {
                    // Refused or unreachable: answered at once, so pause.
                    thread::sleep(REFUSED_PAUSE.min(left));
                }
                last = e;
            }
        }
    }
    Err(last)
}

/// How long one connect try may take in [`connect_within`].
pub const CONNECT_STEP: Duration = Duration::from_millis(250);

/// The pause after a try that was refused at once.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);

/// Copies `input` to `stream` and `stream` to `output` until the peer
/// closes (what `ProxyCommand` needs). When `input` ends first, the sending
/// half is shut down and the rest of the answer is still copied.
pub fn splice(
    stream: TcpStream,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
) -> io::Result<()> {
    let mut upstream = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<()> {
        io::copy(&mut input, &mut upstream)?;
        upstream.shutdown(Shutdown::Write)
    });
    let mut downstream = stream;
    let copied = io::copy(&mut downstream, &mut output).and_then(|_| output.flush());
    // The peer closed: whatever stdin still holds has nowhere to go. The
    // sender thread ends with the process (it may be blocked on stdin).
    if sender.is_finished() {
        sender
            .join()
            .map_err(|_| io::Error::other("the sending thread panicked"))??;
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn quick() -> Retry {
        Retry {
            attempts: 3,
            connect_timeout: Duration::from_millis(200),
            first_pause: Duration::from_millis(10),
            max_pause: Duration::from_millis(20),
        }
    }

    #[test]
    fn pauses_double_up_to_the_maximum() {
        let r = Retry::default();
        let pauses: Vec<u128> = (1..=6).map(|n| r.pause(n).as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(r.pause(40), r.max_pause, "no overflow on long runs");
    }

    #[test]
    fn a_door_that_opens_on_the_second_knock_is_reached_with_two_knocks() {
        // The "door" opens (the listener appears) when the second knock goes.
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = probe.local_addr().unwrap();
        drop(probe);
        let mut listener = None;
        let (stream, knocks) = knock_and_connect(target, &quick(), |n| {
            if n == 2 {
                listener = Some(TcpListener::bind(target).map_err(|e| e.to_string())?);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(knocks, 2);
        assert_eq!(stream.peer_addr().unwrap(), target);
    }

    #[test]
    fn a_closed_port_is_given_up_on_after_every_attempt() {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = probe.local_addr().unwrap();
        drop(probe);
        let mut knocked = 0;
        let err = knock_and_connect(target, &quick(), |_| {
            knocked += 1;
            Ok(())
        })
        .unwrap_err();
        assert_eq!(knocked, 3);
        assert!(
            matches!(err, ReachError::NoAnswer { attempts: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("did not answer after 3 knock(s)"));
    }

    #[test]
    fn a_failing_knock_stops_at_once() {
        let err = knock_and_connect("127.0.0.1:9".parse().unwrap(), &quick(), |_| {
            Err("no key".into())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "knock 1: no key");
    }

    #[test]
    fn splice_carries_both_ways_until_the_peer_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            s.write_all(b"echo: ").unwrap();
            s.write_all(&got).unwrap();
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut out = Vec::new();
        splice(stream, io::Cursor::new(b"hello".to_vec()), &mut out).unwrap();
        server.join().unwrap();
        assert_eq!(out, b"echo: hello");
    }
}

/// The local address this host would send from to reach `target` (no
/// packet is sent: a UDP socket is connected, which only picks a route).
pub fn source_address(target: SocketAddr) -> io::Result<IpAddr> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip())
}

/// What keeps a session's door open while the session lives.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// Knock again when the source address for the server changes
    /// (roaming: Wi-Fi to 4G, a new DHCP lease, a VPN coming up).
    pub follow: bool,
    /// Knock again this often, so that the grant is refreshed before it
    /// expires (for a door that extends a grant on a new knock).
    pub refresh: Option<Duration>,
}

/// How often [`keep_open`] looks at the source address.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Why [`keep_open`] knocked again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rekey {
    /// The source address changed from the first to the second.
    Moved(IpAddr, IpAddr),
    /// The refresh interval passed.
    Refresh,
}

/// Starts a thread that knocks again (with `knock`) whenever `keep` asks,
/// for as long as the process lives; `report` hears each re-knock and its
/// outcome. Does nothing when `keep` asks for nothing.
pub fn keep_open(
    target: SocketAddr,
    keep: Keep,
    knock: impl Fn() -> Result<(), String> + Send + 'static,
    report: impl Fn(&Rekey, &Result<(), String>) + Send + 'static,
) {
    if !keep.follow && keep.refresh.is_none() {
        return;
    }
    // Sampled before the thread starts: a move right after the session
    // began is still a move.
    let mut source = source_address(target).ok();
    thread::spawn(move || {
        let mut last_knock = Instant::now();
        loop {
            thread::sleep(FOLLOW_EVERY);
            let mut why = None;
            if keep.follow {
                // No route (an interface going down between networks) is
                // not a move; the next address seen is.
                if let Ok(now) = source_address(target) {
                    if let Some(before) = source.filter(|&b| b != now) {
                        why = Some(Rekey::Moved(before, now));
                    }
                    source = Some(now);
                }
            }
            if why.is_none()
                && keep
                    .refresh
                    .is_some_and(|every| last_knock.elapsed() >= every)
            {
                why = Some(Rekey::Refresh);
            }
            if let Some(why) = why {
                let outcome = knock();
                report(&why, &outcome);
                last_knock = Instant::now();
            }
        }
    });
}
