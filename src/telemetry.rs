//! Logging setup: `tracing` to stderr as text or JSON lines. Stdout is kept for the machine-read
//! lines (`listening on …`) that tests and tools parse.

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is a validated filter directive. Calling it twice
/// is harmless (the second call does nothing).
pub fn init(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
