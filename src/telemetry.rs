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

/// Lets a log line through at most once per period: operators get the hint (a proxy missing
/// from `trusted_proxies`, an unknown host), and a flood of bad requests does not become a
/// flood of lines.
pub struct Throttle {
    last: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// A throttle that has let nothing through yet.
    pub const fn new() -> Throttle {
        Throttle {
            last: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether a line may be written at `now_secs` (the injected clock), at most once per
    /// `every_secs`.
    pub fn ready(&self, now_secs: u64, every_secs: u64) -> bool {
        use std::sync::atomic::Ordering;
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now_secs.saturating_sub(last) < every_secs {
            return false;
        }
        self.last
            .compare_exchange(last, now_secs.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}
