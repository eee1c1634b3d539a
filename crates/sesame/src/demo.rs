//! `sesame demo`: closed → wrong knock → knock → open → closed again, over
//! IPv4 and IPv6, between two throw-away network namespaces.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sesame_core::Knock;

use crate::client;
use crate::testbed::{Side, Testbed, TestbedError};

/// The protected service's port in both demos.
pub(crate) const SERVICE_PORT: u16 = 2222;
const OPEN_FOR: Duration = Duration::from_secs(4);
const BANNER: &str = "hello from behind the door";

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Namespace setup failed.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    /// The daemon binary is missing or failed.
    #[error("sesamed: {0}")]
    Daemon(String),
    /// Ctrl-C.
    #[error("interrupted; namespaces removed")]
    Interrupted,
    /// Whoever read the output stopped reading (`sesame demo | head`).
    #[error("output closed; stopped early, namespaces removed")]
    OutputClosed,
    /// Something the demo expected did not happen.
    #[error("unexpected result: {0}")]
    Unexpected(String),
    /// Local I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Set once a write to stdout fails (its reader went away): the demo then
/// stops at its next step and cleans up, instead of dying on a panic.
static OUTPUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// `println!` that never panics: a closed stdout only sets
/// [`OUTPUT_CLOSED`].
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            OUTPUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }};
}

pub(crate) fn sesamed_path() -> Result<std::path::PathBuf, DemoError> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("sesamed");
    if path.exists() {
        Ok(path)
    } else {
        Err(DemoError::Daemon(format!(
            "{} not found next to sesame; build both binaries with `cargo build --release`",
            path.display()
        )))
    }
}

fn demo_config() -> String {
    format!(
        r#"[door.demo]
sequence = ["7000", "8000:udp", "9000"]
seq_timeout = "5s"
open_for = "{}s"
protect = ["tcp/{SERVICE_PORT}"]
"#,
        OPEN_FOR.as_secs()
    )
}

/// Starts `sesamed` on `config` in the server namespace of `bed` (which
/// stops it on drop) and returns its log.
pub(crate) fn spawn_sesamed(
    bed: &mut Testbed,
    sesamed: &std::path::Path,
    config: &std::path::Path,
    control_socket: &std::path::Path,
) -> Result<std::process::ChildStderr, DemoError> {
    let mut cmd = bed.command(Side::Server, sesamed.to_str().unwrap_or("sesamed"));
    cmd.arg("--config")
        .arg(config)
        .arg("--control-socket")
        .arg(control_socket)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let idx = bed.spawn(cmd)?;
    bed.child(idx)
        .stderr
        .take()
        .ok_or_else(|| DemoError::Daemon("no stderr".into()))
}

/// What the service on `server` says to a connection from the client
/// namespace of `bed` (from `from`, or the primary address), or why it
/// cannot be reached.
pub(crate) fn probe(bed: &Testbed, from: Option<IpAddr>, server: IpAddr) -> Result<String, String> {
    let addr = SocketAddr::new(server, SERVICE_PORT);
    let connect = move || -> std::io::Result<String> {
        let domain = socket2::Domain::for_address(addr);
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        if let Some(from) = from {
            sock.bind(&SocketAddr::new(from, 0).into())?;
        }
        sock.connect_timeout(&addr.into(), Duration::from_millis(700))?;
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(1))).ok();
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        Ok(buf.trim().to_string())
    };
    match bed.run_in(Side::Client, connect) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes the demo's config folder however the demo ends.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Demo {
    bed: Testbed,
    stop: Arc<AtomicBool>,
}

impl Demo {
    fn sleep(&self, d: Duration) -> Result<(), DemoError> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.stop.load(Ordering::Relaxed) {
                return Err(DemoError::Interrupted);
            }
            if OUTPUT_CLOSED.load(Ordering::Relaxed) {
                return Err(DemoError::OutputClosed);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Tries the protected service from the client namespace.
    fn probe(&self, server: IpAddr) -> Result<Result<String, String>, DemoError> {
        if OUTPUT_CLOSED.load(Ordering::Relaxed) {
            return Err(DemoError::OutputClosed);
        }
        Ok(probe(&self.bed, None, server))
    }

    fn knock(&self, server: IpAddr, knocks: Vec<Knock>) -> Result<(), DemoError> {
        self.bed
            .run_in(Side::Client, move || {
                client::knock_sequence(server, &knocks, Duration::from_millis(20), |_| {})
            })?
            .map_err(|e| DemoError::Unexpected(e.to_string()))
    }

    fn expect_closed(&self, server: IpAddr, step: &str) -> Result<(), DemoError> {
        match self.probe(server)? {
            Err(e) => {
                say!("   ✓ {step}: service unreachable ({e}) — the door is closed");
                Ok(())
            }
            Ok(banner) => Err(DemoError::Unexpected(format!(
                "{step}: the service answered {banner:?} but should be closed"
            ))),
        }
    }

    fn expect_open(&self, server: IpAddr) -> Result<(), DemoError> {
        match self.probe(server)? {
            Ok(banner) => {
                say!("   ✓ connected! the service says {banner:?}");
                Ok(())
            }
            Err(e) => Err(DemoError::Unexpected(format!(
                "the service is still unreachable after the right knock: {e}"
            ))),
        }
    }
}

/// Runs the demo; all namespaces and processes are gone when it returns.
pub fn run() -> Result<(), DemoError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let sesamed = sesamed_path()?;
    let mut bed = Testbed::create("demo")?;
    say!("Sesame demo");
    say!(
        "   server namespace {} ({}, {}) runs sesamed and a TCP service on port {SERVICE_PORT}",
        bed.server,
        Testbed::addr(Side::Server, false),
        Testbed::addr(Side::Server, true)
    );
    say!(
        "   client namespace {} ({}, {}) knocks and connects",
        bed.client,
        Testbed::addr(Side::Client, false),
        Testbed::addr(Side::Client, true)
    );
    say!("   door \"demo\": knock 7000/tcp, 8000/udp, 9000/tcp → tcp/{SERVICE_PORT} opens for your address for {}s\n", OPEN_FOR.as_secs());

    let dir = std::env::temp_dir().join(format!("sesame-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _remove_dir = RemoveDir(dir.clone());
    let config_path = dir.join("sesame.toml");
    std::fs::write(&config_path, demo_config())?;

    // The protected service: a dual-stack listener that greets and hangs up.
    let _service = bed.spawn_in(Side::Server, || -> std::io::Result<()> {
        let listener = TcpListener::bind(("::", SERVICE_PORT))?;
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut s = stream;
            let _ = writeln!(s, "{BANNER}");
        }
        Ok(())
    })?;

    let stderr = spawn_sesamed(&mut bed, &sesamed, &config_path, &dir.join("control.sock"))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            say!("      sesamed │ {line}");
            if line.contains("sesamed ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    let demo = Demo { bed, stop };
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        return Err(DemoError::Daemon(
            "did not become ready within 10 s (see its log above)".into(),
        ));
    }
    let knock = |s: &str| s.parse::<Knock>().expect("valid literal");
    let right = vec![knock("7000"), knock("8000:udp"), knock("9000")];
    let wrong = vec![knock("7000"), knock("9000"), knock("8000:udp")];

    for v6 in [false, true] {
        let server = Testbed::addr(Side::Server, v6);
        let family = if v6 { "IPv6" } else { "IPv4" };
        say!(
            "\n── {family}: client {} → server {server}",
            Testbed::addr(Side::Client, v6)
        );
        say!(" 1. Before knocking, try to connect to port {SERVICE_PORT}");
        demo.expect_closed(server, "before the knock")?;
        say!(" 2. Knock in the wrong order: 7000, 9000, 8000/udp");
        demo.knock(server, wrong.clone())?;
        demo.sleep(Duration::from_millis(200))?;
        demo.expect_closed(server, "after a wrong knock")?;
        say!(" 3. Knock the right sequence: 7000, 8000/udp, 9000");
        demo.knock(server, right.clone())?;
        demo.sleep(Duration::from_millis(100))?;
        demo.expect_open(server)?;
        say!(
            " 4. Wait {}s for the grant to expire in the kernel",
            OPEN_FOR.as_secs() + 1
        );
        demo.sleep(OPEN_FOR + Duration::from_secs(1))?;
        demo.expect_closed(server, "after open_for")?;
    }
    say!("\nDemo complete: the door opened only for the right knock, only for the client, and closed by itself.");
    // Dropping `demo` stops sesamed and deletes both namespaces.
    drop(demo);
    Ok(())
}
