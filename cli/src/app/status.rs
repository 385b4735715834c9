//! `batchctl status`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use batchd_protocol::{PrefixCacheStatus, StatusReport};

use super::args::StatusArgs;
use super::{connect, json, Exit, Interrupt};

/// Asks the daemon for its status and prints it.
pub async fn run(
    args: &StatusArgs,
    socket: &Path,
    out: &mut (dyn Write + Send),
    interrupt: &Interrupt,
) -> Result<Exit> {
    let report = tokio::select! {
        r = async { Ok::<_, anyhow::Error>(connect(socket).await?.status().await?) } => r?,
        _ = interrupt.wait() => return Ok(Exit::Interrupted),
    };
    if args.json {
        writeln!(out, "{}", json::status(&report))?;
    } else {
        out.write_all(render(&report).as_bytes())?;
    }
    out.flush()?;
    Ok(Exit::Success)
}

/// The human form: aligned `key: value` lines.
pub fn render(s: &StatusReport) -> String {
    let m = &s.model;
    let mut rows: Vec<(&str, String)> = vec![
        ("version", s.version.clone()),
        ("model", m.name.clone()),
        ("synthetic", if m.synthetic { "yes" } else { "no" }.into()),
    ];
    if !m.note.is_empty() {
        rows.push(("note", m.note.clone()));
    }
    if !m.path.is_empty() {
        rows.push(("model path", m.path.clone()));
    }
    rows.extend([
        ("backend", backend(s)),
        ("policy", s.policy.clone()),
        (
            "deterministic",
            if s.deterministic {
                "yes (greedy output does not depend on batching)"
            } else {
                "no"
            }
            .into(),
        ),
        (
            "slots",
            format!("{} busy of {}", s.slots_busy, s.slots_total),
        ),
        (
            "queued",
            format!("{} (capacity {})", s.queued, s.queue_capacity),
        ),
        ("tokens generated", s.tokens_generated.to_string()),
        (
            "tokens/s",
            format!("{:.1} (last few seconds)", s.tokens_per_second),
        ),
        ("steps", s.steps.to_string()),
        ("uptime", duration(s.uptime_s)),
        (
            "n_ctx",
            format!("{} ({} per sequence)", s.n_ctx, s.n_ctx_seq),
        ),
        ("prefix cache", prefix_cache(&s.prefix_cache)),
    ]);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// `cuda on NVIDIA H100 80GB HBM3 (13 layers offloaded; greedy sampled on the device)`.
fn backend(s: &StatusReport) -> String {
    let mut out = s.backend.clone();
    if !s.device.is_empty() {
        out += &format!(" on {}", s.device);
    }
    let mut notes = Vec::new();
    if s.gpu_layers > 0 {
        notes.push(format!("{} layers offloaded", s.gpu_layers));
    }
    if s.device_sampling {
        notes.push("greedy sampled on the device".to_string());
    }
    if !notes.is_empty() {
        out += &format!(" ({})", notes.join("; "));
    }
    out
}

/// `3 entries, 1,536 tokens, 54.0 of 576.0 MiB; 31 hits (15,872 tokens reused), 1 miss`.
fn prefix_cache(c: &PrefixCacheStatus) -> String {
    if c.budget_bytes == 0 {
        return "off".into();
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    format!(
        "{} entries, {} tokens, {:.1} of {:.1} MiB; {} hits ({} tokens reused), {} misses, {} evicted",
        c.entries,
        c.tokens,
        mib(c.bytes),
        mib(c.budget_bytes),
        c.hits,
        c.reused_tokens,
        c.misses,
        c.evictions
    )
}

/// `1h 02m 03s`, `2m 05s`, `4.2s`.
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let total = secs as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// A status report of a busy demo daemon, the one fixture for tests of what `status`
/// prints (here and in the CLI's integration tests).
#[doc(hidden)]
pub fn example_report() -> StatusReport {
    StatusReport {
        version: "0.1.0".into(),
        model: batchd_protocol::ModelInfo {
            name: "demo".into(),
            synthetic: true,
            note: "random weights".into(),
            ..Default::default()
        },
        policy: "continuous".into(),
        slots_total: 4,
        slots_busy: 1,
        queued: 2,
        queue_capacity: 64,
        tokens_per_second: 12.34,
        uptime_s: 61.0,
        n_ctx: 4096,
        n_ctx_seq: 1024,
        backend: "cpu".into(),
        prefix_cache: PrefixCacheStatus {
            budget_bytes: 576 << 20,
            bytes: 36_900_000,
            entries: 2,
            tokens: 1000,
            hits: 3,
            misses: 1,
            reused_tokens: 1500,
            evictions: 0,
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(4.25), "4.2s");
        assert_eq!(duration(125.0), "2m 05s");
        assert_eq!(duration(3723.9), "1h 02m 03s");
        assert_eq!(duration(f64::NAN), "?");
    }

    #[test]
    fn aligned_lines() {
        let s = example_report();
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"model:            demo"), "{text}");
        assert!(lines.contains(&"synthetic:        yes"), "{text}");
        assert!(
            lines.contains(&"note:             random weights"),
            "{text}"
        );
        assert!(lines.contains(&"slots:            1 busy of 4"), "{text}");
        assert!(
            lines.contains(&"tokens/s:         12.3 (last few seconds)"),
            "{text}"
        );
        assert!(lines.contains(&"uptime:           1m 01s"), "{text}");
        assert!(
            lines.contains(&"prefix cache:     2 entries, 1000 tokens, 35.2 of 576.0 MiB; 3 hits (1500 tokens reused), 1 misses, 0 evicted"),
            "{text}"
        );
        assert!(!text.contains("model path"));
        // Every value starts in the same column.
        let col = |l: &str| {
            let i = l.find(':').unwrap() + 1;
            i + l[i..].len() - l[i..].trim_start().len()
        };
        let first = col(lines[0]);
        assert!(lines.iter().all(|l| col(l) == first), "{text}");
    }

    #[test]
    fn backend_line_names_device_offload_and_sampling() {
        let cpu = StatusReport {
            backend: "cpu".into(),
            device: "Intel Xeon".into(),
            ..Default::default()
        };
        assert_eq!(backend(&cpu), "cpu on Intel Xeon");
        let gpu = StatusReport {
            backend: "cuda".into(),
            device: "NVIDIA H200".into(),
            gpu_layers: 13,
            device_sampling: true,
            ..Default::default()
        };
        assert_eq!(
            backend(&gpu),
            "cuda on NVIDIA H200 (13 layers offloaded; greedy sampled on the device)"
        );
        assert_eq!(backend(&StatusReport::default()), "");
    }
}
