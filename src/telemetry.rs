//! Logging setup: `tracing` to stderr as text or JSON lines. Stdout is kept for the machine-read
//! lines (`listening on …`) that tests and tools parse.

use crate::config::LogFormat;

/// Installs the global subscriber. `level` is a validated filter directive. Calling it twice
/// is harmless (the second call does nothing).
///
/// actix-http logs a request it cannot parse, or a connection a client cut mid-request, as an
/// error; that is the client's mistake, not the gateway's, so those lines show only where the
/// filter enables debug for `actix_http`.
pub fn init(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let client_noise = client_noise_shown(level);
    let hide = tracing_subscriber::filter::filter_fn(move |meta| {
        client_noise || !meta.target().starts_with("actix_http::h1")
    });
    // Colours only for a person at a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(layer.with_filter(hide)).try_init(),
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_filter(hide))
            .try_init(),
    };
}

/// Whether `level` enables debug lines of actix-http's connection handling.
fn client_noise_shown(level: &str) -> bool {
    use tracing_subscriber::layer::SubscriberExt;
    let Ok(filter) = tracing_subscriber::EnvFilter::try_new(level) else {
        return false;
    };
    let probe = tracing_subscriber::registry().with(filter);
    tracing::subscriber::with_default(
        probe,
        || tracing::enabled!(target: "actix_http::h1::dispatcher", tracing::Level::DEBUG),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_logged_by_actix_show_only_at_debug() {
        assert!(!client_noise_shown("info"));
        assert!(!client_noise_shown("warn,cloudbase_gateway=debug"));
        assert!(client_noise_shown("debug"));
        assert!(client_noise_shown("info,actix_http=debug"));
        assert!(client_noise_shown("trace"));
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_period() {
        let t = Throttle::new();
        assert!(t.ready(100, 60));
        assert!(!t.ready(130, 60));
        assert!(t.ready(160, 60));
        assert!(!t.ready(161, 60));
    }
}
