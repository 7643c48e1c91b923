//! Prometheus metrics, rendered in the text exposition format on the separate metrics
//! listener: requests by route and status, a proxy latency histogram, refreshes by outcome,
//! sign-ins by method, CloudBase call latency and errors by endpoint, active sessions.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::cloudbase::client::CallObserver;

/// Histogram bucket bounds in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; 12],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Counters of one route by status (100–599).
struct StatusCounts([AtomicU64; 500]);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Every metric the gateway keeps.
#[derive(Default)]
pub struct Metrics {
    /// Route label → counters: a shared read lock and an atomic per request, no allocation
    /// once a route has been seen.
    requests: parking_lot::RwLock<std::collections::HashMap<String, Box<StatusCounts>>>,
    proxy_latency: Histogram,
    refreshes: Mutex<BTreeMap<&'static str, u64>>,
    sign_ins: Mutex<BTreeMap<String, u64>>,
    cloudbase: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    cloudbase_errors: Mutex<BTreeMap<(String, String), u64>>,
    store: Mutex<BTreeMap<&'static str, std::sync::Arc<Histogram>>>,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16) {
        let i = (status.clamp(100, 599) - 100) as usize;
        if let Some(c) = self.requests.read().get(route) {
            c.0[i].fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.requests
            .write()
            .entry(route.to_string())
            .or_default()
            .0[i]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long one proxied request took to its response head.
    pub fn proxied(&self, elapsed: Duration) {
        self.proxy_latency.observe(elapsed);
    }

    /// Counts a refresh: `ok`, `ended`, `unavailable`, `anonymous_resign_in`.
    pub fn refresh(&self, outcome: &'static str) {
        *self.refreshes.lock().entry(outcome).or_default() += 1;
    }

    /// Counts a sign-in by method (`password`, `anonymous`…).
    pub fn sign_in(&self, method: &str) {
        *self.sign_ins.lock().entry(method.to_string()).or_default() += 1;
    }

    /// Records one shared-store (Redis) operation: its latency, and whether it failed.
    pub fn store(&self, op: &'static str, elapsed: Duration, failed: bool) {
        let h = self.store.lock().entry(op).or_default().clone();
        h.observe(elapsed);
        if failed {
            *self.store_errors.lock().entry(op).or_default() += 1;
        }
    }

    /// The text exposition, with `active_sessions` from the store.
    pub fn render(&self, active_sessions: u64) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP cloudbase_gateway_requests_total Requests answered, by route and status.\n# TYPE cloudbase_gateway_requests_total counter\n");
        let requests = self.requests.read();
        let mut routes: Vec<&String> = requests.keys().collect();
        routes.sort();
        for route in routes {
            for (i, n) in requests[route].0.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = i + 100;
                    let _ = writeln!(
                        out,
                        "cloudbase_gateway_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }
        drop(requests);
        out.push_str("# HELP cloudbase_gateway_proxy_duration_seconds Time from receiving a request to the upstream's response head.\n# TYPE cloudbase_gateway_proxy_duration_seconds histogram\n");
        self.proxy_latency
            .render(&mut out, "cloudbase_gateway_proxy_duration_seconds", "");
        out.push_str("# HELP cloudbase_gateway_refreshes_total Token refreshes, by outcome.\n# TYPE cloudbase_gateway_refreshes_total counter\n");
        for (outcome, n) in self.refreshes.lock().iter() {
            let _ = writeln!(
                out,
                "cloudbase_gateway_refreshes_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        out.push_str("# HELP cloudbase_gateway_sign_ins_total Sign-ins, by method.\n# TYPE cloudbase_gateway_sign_ins_total counter\n");
        for (method, n) in self.sign_ins.lock().iter() {
            let _ = writeln!(
                out,
                "cloudbase_gateway_sign_ins_total{{method=\"{}\"}} {n}",
                escape(method)
            );
        }
        out.push_str("# HELP cloudbase_gateway_cloudbase_duration_seconds CloudBase call latency, by endpoint.\n# TYPE cloudbase_gateway_cloudbase_duration_seconds histogram\n");
        for (endpoint, h) in self.cloudbase.lock().iter() {
            h.render(
                &mut out,
                "cloudbase_gateway_cloudbase_duration_seconds",
                &format!("endpoint=\"{}\"", escape(endpoint)),
            );
        }
        out.push_str("# HELP cloudbase_gateway_cloudbase_errors_total Failed CloudBase calls, by endpoint and error.\n# TYPE cloudbase_gateway_cloudbase_errors_total counter\n");
        for ((endpoint, error), n) in self.cloudbase_errors.lock().iter() {
            let _ = writeln!(
                out,
                "cloudbase_gateway_cloudbase_errors_total{{endpoint=\"{}\",error=\"{}\"}} {n}",
                escape(endpoint),
                escape(error)
            );
        }
        out.push_str("# HELP cloudbase_gateway_store_duration_seconds Shared-store (Redis) operation latency, by operation.\n# TYPE cloudbase_gateway_store_duration_seconds histogram\n");
        for (op, h) in self.store.lock().iter() {
            h.render(
                &mut out,
                "cloudbase_gateway_store_duration_seconds",
                &format!("op=\"{op}\""),
            );
        }
        out.push_str("# HELP cloudbase_gateway_store_errors_total Failed shared-store operations, by operation.\n# TYPE cloudbase_gateway_store_errors_total counter\n");
        for (op, n) in self.store_errors.lock().iter() {
            let _ = writeln!(
                out,
                "cloudbase_gateway_store_errors_total{{op=\"{op}\"}} {n}"
            );
        }
        out.push_str("# HELP cloudbase_gateway_active_sessions Sessions in the store.\n# TYPE cloudbase_gateway_active_sessions gauge\n");
        let _ = writeln!(out, "cloudbase_gateway_active_sessions {active_sessions}");
        out
    }
}

impl CallObserver for Metrics {
    fn observe(&self, endpoint: &str, elapsed: Duration, error: Option<&str>) {
        let h = self
            .cloudbase
            .lock()
            .entry(endpoint.to_string())
            .or_default()
            .clone();
        h.observe(elapsed);
        if let Some(error) = error {
            *self
                .cloudbase_errors
                .lock()
                .entry((endpoint.to_string(), error.to_string()))
                .or_default() += 1;
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
