//! Log output for both binaries: human-readable by default, JSON on request.
//!
//! Every knock-related line carries `source`, `door` and `event` fields, and the
//! timestamp has microsecond resolution (RFC 3339, UTC).

use clap::ValueEnum;

/// Output format of log lines.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber writing to stderr. `verbose` enables
/// debug events such as duplicate knocks and malformed packets.
pub fn init(format: LogFormat, verbose: bool) {
    let level = if verbose {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(std::io::stderr);
    // A second init (e.g. in tests) is harmless; ignore it.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
