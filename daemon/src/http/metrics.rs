//! `GET /metrics` in the Prometheus text format. Names follow llama-server's where it has
//! one (`llamacpp:*`), so existing dashboards work; batchd's own are `batchd_*`:
//!
//! | name | type | what |
//! |---|---|---|
//! | `batchd_http_requests_total{path,code}` | counter | HTTP requests answered |
//! | `llamacpp:prompt_tokens_total` | counter | prompt tokens of finished HTTP requests |
//! | `llamacpp:tokens_predicted_total` | counter | tokens generated for HTTP requests |
//! | `batchd_tokens_generated_total` | counter | tokens generated for all clients |
//! | `llamacpp:n_decode_total` | counter | engine steps (one `llama_decode` each) |
//! | `llamacpp:requests_processing` | gauge | slots busy |
//! | `llamacpp:requests_deferred` | gauge | requests queued for a slot |
//! | `batchd_slots_total` | gauge | slots |
//! | `batchd_step_seconds` | histogram | wall time of each engine step |
//!
//! The step histogram subscribes to the engine's step trace at the first scrape, so a
//! daemon nobody scrapes pays nothing for it; it counts steps from then on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use batchd_protocol::{Done, StatusReport};

use super::submit::Engine;

/// Upper bounds of the step-time buckets, in seconds.
const STEP_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counters the HTTP side keeps; the engine's own come from its status report.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    predicted_tokens: AtomicU64,
    steps: Mutex<Histogram>,
    subscribed: AtomicBool,
}

#[derive(Default)]
struct Histogram {
    /// Steps at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; STEP_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one answered HTTP request.
    pub fn request(&self, path: &str, code: u16) {
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((path.to_string(), code)).or_default() += 1;
        }
    }

    /// Counts a finished choice's tokens.
    pub fn request_done(&self, done: &Done) {
        self.prompt_tokens
            .fetch_add(u64::from(done.usage.prompt_tokens), Ordering::Relaxed);
        self.predicted_tokens
            .fetch_add(u64::from(done.usage.completion_tokens), Ordering::Relaxed);
    }

    /// Starts feeding the step histogram from the engine's trace (once).
    pub fn watch_steps(self: &Arc<Self>, engine: &Engine) {
        if self.subscribed.swap(true, Ordering::Relaxed) {
            return;
        }
        let Some(mut steps) = engine.trace() else {
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(step) = steps.recv().await {
                me.step(step.micros as f64 / 1e6);
            }
        });
    }

    fn step(&self, seconds: f64) {
        if let Ok(mut h) = self.steps.lock() {
            if let Some(i) = STEP_BUCKETS.iter().position(|b| seconds <= *b) {
                h.buckets[i] += 1;
            }
            h.count += 1;
            h.sum += seconds;
        }
    }

    /// The whole exposition.
    pub fn render(&self, status: &StatusReport) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "llamacpp:prompt_tokens_total",
            "counter",
            "Prompt tokens of finished HTTP requests.",
            self.prompt_tokens.load(Ordering::Relaxed) as f64,
        );
        metric(
            "llamacpp:tokens_predicted_total",
            "counter",
            "Tokens generated for HTTP requests.",
            self.predicted_tokens.load(Ordering::Relaxed) as f64,
        );
        metric(
            "batchd_tokens_generated_total",
            "counter",
            "Tokens generated for all clients, socket and HTTP.",
            status.tokens_generated as f64,
        );
        metric(
            "llamacpp:n_decode_total",
            "counter",
            "Engine steps, one llama_decode each.",
            status.steps as f64,
        );
        metric(
            "llamacpp:requests_processing",
            "gauge",
            "Slots busy.",
            f64::from(status.slots_busy),
        );
        metric(
            "llamacpp:requests_deferred",
            "gauge",
            "Requests queued for a slot.",
            f64::from(status.queued),
        );
        metric(
            "batchd_slots_total",
            "gauge",
            "Slots (sequences decoded together).",
            f64::from(status.slots_total),
        );
        let cache = &status.prefix_cache;
        metric(
            "batchd_prefix_cache_hits_total",
            "counter",
            "Requests that reused cached prompt positions.",
            cache.hits as f64,
        );
        metric(
            "batchd_prefix_cache_misses_total",
            "counter",
            "Requests that found no cached prefix worth reusing.",
            cache.misses as f64,
        );
        metric(
            "batchd_prefix_cache_reused_tokens_total",
            "counter",
            "Prompt tokens reused from the prefix cache instead of computed.",
            cache.reused_tokens as f64,
        );
        metric(
            "batchd_prefix_cache_bytes",
            "gauge",
            "Bytes of saved prefixes held.",
            cache.bytes as f64,
        );
        out.push_str(
            "# HELP batchd_http_requests_total HTTP requests answered.\n\
             # TYPE batchd_http_requests_total counter\n",
        );
        if let Ok(requests) = self.requests.lock() {
            for ((path, code), n) in requests.iter() {
                let _ = writeln!(
                    out,
                    "batchd_http_requests_total{{path=\"{}\",code=\"{code}\"}} {n}",
                    escape(path)
                );
            }
        }
        out.push_str(
            "# HELP batchd_step_seconds Wall time of each engine step.\n\
             # TYPE batchd_step_seconds histogram\n",
        );
        if let Ok(h) = self.steps.lock() {
            let mut cumulative = 0;
            for (bound, n) in STEP_BUCKETS.iter().zip(h.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "batchd_step_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "batchd_step_seconds_bucket{{le=\"+Inf\"}} {}\nbatchd_step_seconds_sum {}\nbatchd_step_seconds_count {}",
                h.count, h.sum, h.count
            );
        }
        out
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_inf_counts_everything() {
        let m = Metrics::default();
        m.step(0.0005);
        m.step(0.02);
        m.step(100.0);
        m.request("/v1/completions", 200);
        let text = m.render(&StatusReport::default());
        assert!(
            text.contains("batchd_step_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("batchd_step_seconds_bucket{le=\"0.025\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("batchd_step_seconds_bucket{le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("batchd_step_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("batchd_http_requests_total{path=\"/v1/completions\",code=\"200\"} 1")
        );
    }
}
