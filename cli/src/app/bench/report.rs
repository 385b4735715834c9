//! A bench run's results: summarised from the samples, printed as a table or JSON.

use serde_json::{json, Value};

use super::drive::Outcome;
use super::plan::Plan;
use super::sample::ms;
use super::stats::Summary;

/// Everything `batchctl bench` reports; each field means what the JSON key of the same
/// name does (see [`super::JSON_HELP`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub workload: &'static str,
    pub requests: usize,
    pub prompt_tokens: u64,
    /// Of which reused from the daemon's prefix cache.
    pub cached_tokens: u64,
    pub generated_tokens: u64,
    pub wall_s: f64,
    pub tokens_per_s: f64,
    pub ttft_ms: Summary,
    pub itl_ms: Summary,
    pub queue_ms: Summary,
    pub policy: String,
    pub slots: u32,
    pub warnings: Vec<String>,
    pub extra: Extra,
}

/// What only some workloads report.
#[derive(Clone, Debug, PartialEq)]
pub enum Extra {
    /// Nothing more (seed).
    None,
    /// The closed loop's shape.
    Uniform { clients: u32, max_tokens: u32 },
    /// How the long prompt treated the streams.
    LongPrompt {
        streams: usize,
        long_prompt_tokens: u32,
        long_ttft_ms: Option<f64>,
        streams_itl_ms: Summary,
    },
}

impl Report {
    /// Summarises a run of `plan` on a daemon with `policy` and `slots`.
    pub fn new(
        plan: &Plan,
        outcome: &Outcome,
        policy: String,
        slots: u32,
        warnings: Vec<String>,
    ) -> Self {
        let s = &outcome.samples;
        let first = s.iter().map(|x| x.submitted).min();
        let last = s.iter().map(|x| x.finished).max();
        let wall_s = match (first, last) {
            (Some(a), Some(b)) => ms(b.saturating_duration_since(a)) / 1000.0,
            _ => 0.0,
        };
        let generated_tokens: u64 = s
            .iter()
            .map(|x| u64::from(x.done.usage.completion_tokens))
            .sum();
        let extra = match (plan, &outcome.long_prompt) {
            (
                Plan::Uniform {
                    clients,
                    max_tokens,
                    ..
                },
                _,
            ) => Extra::Uniform {
                clients: *clients,
                max_tokens: *max_tokens,
            },
            (Plan::LongPrompt { .. }, Some(lp)) => {
                let long = s.get(lp.streams);
                Extra::LongPrompt {
                    streams: lp.streams,
                    long_prompt_tokens: long.map_or(0, |l| l.done.usage.prompt_tokens),
                    long_ttft_ms: long.and_then(|l| l.ttft_ms()),
                    streams_itl_ms: Summary::of(lp.streams_gaps_ms.clone()),
                }
            }
            _ => Extra::None,
        };
        Report {
            workload: plan.workload().name(),
            requests: s.len(),
            prompt_tokens: s
                .iter()
                .map(|x| u64::from(x.done.usage.prompt_tokens))
                .sum(),
            cached_tokens: s
                .iter()
                .map(|x| u64::from(x.done.usage.cached_tokens))
                .sum(),
            generated_tokens,
            wall_s,
            tokens_per_s: if wall_s > 0.0 {
                generated_tokens as f64 / wall_s
            } else {
                0.0
            },
            ttft_ms: Summary::of(s.iter().filter_map(|x| x.ttft_ms()).collect()),
            itl_ms: Summary::of(s.iter().flat_map(|x| x.gaps_ms()).collect()),
            queue_ms: Summary::of(s.iter().map(|x| x.done.timings.queue_ms).collect()),
            policy,
            slots,
            warnings,
            extra,
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "workload": self.workload,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "generated_tokens": self.generated_tokens,
            "wall_s": self.wall_s,
            "tokens_per_s": self.tokens_per_s,
            "ttft_ms": p50_p99(&self.ttft_ms),
            "itl_ms": p50_p99(&self.itl_ms),
            "queue_ms": p50_p99(&self.queue_ms),
            "policy": self.policy,
            "slots": self.slots,
            "warnings": self.warnings,
        });
        let more = match &self.extra {
            Extra::None => json!({}),
            Extra::Uniform {
                clients,
                max_tokens,
            } => json!({ "clients": clients, "max_tokens": max_tokens }),
            Extra::LongPrompt {
                streams,
                long_prompt_tokens,
                long_ttft_ms,
                streams_itl_ms,
            } => json!({
                "streams": streams,
                "long_prompt_tokens": long_prompt_tokens,
                "long_ttft_ms": long_ttft_ms,
                "streams_itl_ms": {
                    "p50": streams_itl_ms.p50,
                    "p99": streams_itl_ms.p99,
                    "max": streams_itl_ms.max,
                },
                "streams_itl_ratio": streams_itl_ms.tail_ratio(),
            }),
        };
        if let (Value::Object(v), Value::Object(more)) = (&mut v, more) {
            v.extend(more);
        }
        v
    }

    /// The human form: aligned `key: value` lines.
    pub fn render(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![
            ("workload", self.workload.to_string()),
            ("daemon", format!("{}, {} slots", self.policy, self.slots)),
        ];
        if let Extra::Uniform {
            clients,
            max_tokens,
        } = &self.extra
        {
            rows.push((
                "clients",
                format!("{clients} (closed loop, {max_tokens} tokens each)"),
            ));
        }
        rows.extend([
            ("requests", self.requests.to_string()),
            (
                "prompt tokens",
                format!(
                    "{} ({} computed, {} cached)",
                    self.prompt_tokens,
                    self.prompt_tokens - self.cached_tokens,
                    self.cached_tokens
                ),
            ),
            ("generated tokens", self.generated_tokens.to_string()),
            ("wall time", format!("{:.3} s", self.wall_s)),
            ("throughput", format!("{:.1} tok/s", self.tokens_per_s)),
            ("time to first token", latency(&self.ttft_ms, false)),
            ("inter-token latency", latency(&self.itl_ms, false)),
            ("queue wait", latency(&self.queue_ms, false)),
        ]);
        if let Extra::LongPrompt {
            streams,
            long_prompt_tokens,
            long_ttft_ms,
            streams_itl_ms,
        } = &self.extra
        {
            rows.extend([
                ("streams", streams.to_string()),
                (
                    "long prompt",
                    format!(
                        "{long_prompt_tokens} tokens, first token after {}",
                        opt_ms(*long_ttft_ms)
                    ),
                ),
                (
                    "stream ITL during long prompt",
                    latency(streams_itl_ms, true),
                ),
            ]);
        }
        for w in &self.warnings {
            rows.push(("warning", w.clone()));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        rows.iter()
            .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
            .collect()
    }
}

fn p50_p99(s: &Summary) -> Value {
    json!({ "p50": s.p50, "p99": s.p99 })
}

/// `p50 1.23 ms   p99 4.56 ms`, with the max and tail ratio if `tail`.
fn latency(s: &Summary, tail: bool) -> String {
    let mut line = format!("p50 {:<12} p99 {:<12}", opt_ms(s.p50), opt_ms(s.p99));
    if tail {
        line.push_str(&format!(" max {:<12}", opt_ms(s.max)));
        if let Some(r) = s.tail_ratio() {
            line.push_str(&format!(" p99/p50 {r:.1}"));
        }
    }
    line.push_str(&format!(" ({} samples)", s.n));
    line.trim_end().to_string()
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2} ms"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::bench::drive::LongPrompt;
    use crate::app::bench::sample::tests::{done, sample};
    use std::time::{Duration, Instant};

    fn two_requests() -> Outcome {
        let t0 = Instant::now();
        let mut b = sample(
            t0 + Duration::from_millis(5),
            &[20, 22, 30],
            done(4, 3, 2.0),
        );
        b.finished = t0 + Duration::from_millis(2000);
        Outcome {
            samples: vec![sample(t0, &[10, 11], done(3, 2, 0.5)), b],
            long_prompt: None,
        }
    }

    #[test]
    fn seed_json_has_the_stable_keys() {
        let r = Report::new(&Plan::Seed, &two_requests(), "continuous".into(), 3, vec![]);
        let v = r.to_json();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "workload",
            "requests",
            "prompt_tokens",
            "cached_tokens",
            "generated_tokens",
            "wall_s",
            "tokens_per_s",
            "ttft_ms",
            "itl_ms",
            "queue_ms",
            "policy",
            "slots",
            "warnings",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(v["workload"], "seed");
        assert_eq!(v["requests"], 2);
        assert_eq!(v["prompt_tokens"], 7);
        assert_eq!(v["generated_tokens"], 5);
        assert_eq!(v["wall_s"], 2.0);
        assert_eq!(v["tokens_per_s"], 2.5);
        // TTFTs 10 and 20 ms; gaps 1, 2, 8 ms; queue 0.5 and 2 ms.
        assert_eq!(v["ttft_ms"], json!({"p50": 10.0, "p99": 20.0}));
        assert_eq!(v["itl_ms"], json!({"p50": 2.0, "p99": 8.0}));
        assert_eq!(v["queue_ms"], json!({"p50": 0.5, "p99": 2.0}));
        assert_eq!(
            (v["policy"].as_str(), v["slots"].as_u64()),
            (Some("continuous"), Some(3))
        );
    }

    #[test]
    fn long_prompt_reports_the_streams_apart() {
        let mut o = two_requests();
        o.long_prompt = Some(LongPrompt {
            streams: 1,
            streams_gaps_ms: vec![1.0, 1.0, 9.0],
        });
        let plan = Plan::LongPrompt {
            streams: 1,
            prompt_tokens: 4,
            max_tokens: 2,
        };
        let r = Report::new(&plan, &o, "continuous".into(), 2, vec!["w".into()]);
        let v = r.to_json();
        assert_eq!(v["workload"], "long-prompt");
        assert_eq!(v["streams"], 1);
        assert_eq!(v["long_prompt_tokens"], 4);
        assert_eq!(v["long_ttft_ms"], 20.0);
        assert_eq!(
            v["streams_itl_ms"],
            json!({"p50": 1.0, "p99": 9.0, "max": 9.0})
        );
        assert_eq!(v["streams_itl_ratio"], 9.0);
        assert_eq!(v["warnings"], json!(["w"]));
        let text = r.render();
        assert!(
            text.contains("stream ITL during long prompt: p50 1.00 ms"),
            "{text}"
        );
        assert!(text.contains("p99/p50 9.0 (3 samples)"), "{text}");
        assert!(text.contains("warning:"), "{text}");
    }

    #[test]
    fn uniform_extras_and_table() {
        let plan = Plan::Uniform {
            clients: 4,
            requests: 2,
            max_tokens: 3,
            prompt: super::super::plan::UniformPrompt::Fixed("x".into()),
        };
        let r = Report::new(&plan, &two_requests(), "static".into(), 4, vec![]);
        let v = r.to_json();
        assert_eq!(
            (v["clients"].as_u64(), v["max_tokens"].as_u64()),
            (Some(4), Some(3))
        );
        let text = r.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"daemon:              static, 4 slots"),
            "{text}"
        );
        assert!(lines.contains(&"generated tokens:    5"), "{text}");
        assert!(lines.contains(&"throughput:          2.5 tok/s"), "{text}");
        assert!(
            lines.contains(&"time to first token: p50 10.00 ms     p99 20.00 ms     (2 samples)"),
            "{text}"
        );
    }

    #[test]
    fn no_samples_means_null_percentiles() {
        let o = Outcome {
            samples: vec![],
            long_prompt: None,
        };
        let v = Report::new(&Plan::Seed, &o, "continuous".into(), 3, vec![]).to_json();
        assert_eq!(v["ttft_ms"], json!({"p50": null, "p99": null}));
        assert_eq!(v["tokens_per_s"], 0.0);
    }
}
