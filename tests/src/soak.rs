//! Soak harness: many concurrent clients, some of them vanishing mid-stream and some
//! sending garbage, against one real batchd, counting exactly what comes back.
//!
//! The plan (which request is which kind, prompts, lengths, fault variants) comes from a
//! seeded PRNG, so a failing run replays with the same seed; only the interleaving of the
//! clients differs between runs. Every read, write and connect has a timeout, and clients
//! take no new work after the deadline, so a run always ends by itself.
//!
//! One file past 400 lines: the plan, the client kinds and the accounting are one
//! harness whose parts only make sense together (the binary is `src/bin/soak.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use batchd_protocol::frame::encode_frame;
use batchd_protocol::{
    read_frame, ClientMessage, ErrorCode, FinishReason, GenerateRequest, RequestId, ServerMessage,
    StatusReport, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use crate::{greedy, temp_dir, Daemon, PROMPTS};

/// Error codes a soak run may see: refusals of a full queue and the answers to garbage.
pub const EXPECTED_ERRORS: [&str; 4] =
    ["busy", "bad_frame", "frame_too_large", "protocol_violation"];

/// Largest frame the harness reads from the daemon.
const READ_LIMIT: u32 = 1 << 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Requests in all, of every kind.
    pub requests: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Seed of the plan.
    pub seed: u64,
    /// The daemon's `--slots`.
    pub slots: u32,
    /// The daemon's `--max-frame`.
    pub max_frame: u32,
    /// Share of requests whose client drops the socket mid-stream.
    pub kill_share: f64,
    /// Share of requests that are garbage or oversized frames.
    pub fault_share: f64,
    /// Longest wait for one connect, write or frame.
    pub op_timeout: Duration,
    /// Clients take no new work after this.
    pub deadline: Duration,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            requests: 2000,
            clients: 32,
            seed: 1,
            slots: 8,
            max_frame: DEFAULT_MAX_FRAME_BYTES,
            kill_share: 0.10,
            fault_share: 0.01,
            op_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(30 * 60),
        }
    }
}

/// Requests sent, by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sent {
    /// Ordinary streaming requests, counted exactly.
    pub normal: u64,
    /// Requests whose client dropped the socket after 1–3 tokens.
    pub killed: u64,
    /// Connections that sent garbage or oversized frames.
    pub faulty: u64,
}

/// Everything a soak run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SoakReport {
    pub seed: u64,
    pub clients: usize,
    pub slots: u32,
    /// Requests planned.
    pub requests: usize,
    pub sent: Sent,
    /// Planned requests not run because the deadline passed.
    pub skipped: u64,
    pub connections: u64,
    /// Normal requests sent, less those refused `busy`.
    pub completions_expected: u64,
    /// First `Done` frames of normal requests.
    pub completions_received: u64,
    /// Completions whose finish reason, `usage.completion_tokens` or token count was not
    /// `length` and `max_tokens`.
    pub completions_wrong: u64,
    /// Token frames of normal requests.
    pub tokens_received: u64,
    /// A second `Done` for one id.
    pub duplicates: u64,
    /// Token or error frames for an id after its `Done`.
    pub events_after_done: u64,
    /// Frames for ids the connection never used, or messages it never asked for.
    pub unexpected_frames: u64,
    pub refused_busy: u64,
    /// Error frames of every connection, by code.
    pub errors: BTreeMap<String, u64>,
    /// How each kind of bad connection ended: an error code, `closed`, or `hung`.
    pub faults: BTreeMap<String, BTreeMap<String, u64>>,
    /// Operations of normal and killed clients that ran out of time.
    pub timeouts: u64,
    /// Normal or killed connections the daemon closed or broke before they were done.
    pub broken_connections: u64,
    /// Tokens the killed clients read before leaving.
    pub killed_tokens_read: u64,
    /// The daemon's VmRSS before the run, when half the jobs had been taken (caches
    /// warm), and after the run.
    pub rss_start_kb: Option<u64>,
    pub rss_mid_kb: Option<u64>,
    pub rss_end_kb: Option<u64>,
    /// From the daemon's status once it settled after the run.
    pub slots_busy: Option<u32>,
    pub queued: Option<u32>,
    /// How long the daemon took after the run to report no busy slot and no queue.
    pub settle_ms: u64,
    pub daemon_alive: bool,
    /// SIGTERM at the end made it exit 0.
    pub clean_exit: bool,
    /// Lines of the daemon's stderr that say "panicked".
    pub panics: u64,
    pub panic_lines: Vec<String>,
    pub wall_s: f64,
    pub requests_per_s: f64,
    pub tokens_per_s: f64,
}

impl SoakReport {
    /// What went wrong, in words; empty when the run passed.
    pub fn defects(&self) -> Vec<String> {
        let mut d = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                d.push(what)
            }
        };
        check(
            self.completions_expected != self.completions_received,
            format!(
                "{} completions expected, {} received",
                self.completions_expected, self.completions_received
            ),
        );
        for (n, what) in [
            (self.completions_wrong, "wrong completions"),
            (self.duplicates, "duplicate Done frames"),
            (self.events_after_done, "events after Done"),
            (self.unexpected_frames, "unexpected frames"),
            (self.timeouts, "timeouts"),
            (self.broken_connections, "broken connections"),
            (self.skipped, "skipped requests"),
            (self.panics, "panics"),
        ] {
            check(n != 0, format!("{n} {what}"));
        }
        for (code, n) in &self.errors {
            check(
                !EXPECTED_ERRORS.contains(&code.as_str()),
                format!("{n} unexpected `{code}` errors"),
            );
        }
        for (kind, ends) in &self.faults {
            if let Some(n) = ends.get("hung") {
                check(true, format!("{n} `{kind}` connections hung"));
            }
        }
        check(!self.daemon_alive, "the daemon died".into());
        check(
            !self.clean_exit,
            "the daemon did not exit 0 on SIGTERM".into(),
        );
        check(
            self.slots_busy != Some(0) || self.queued != Some(0),
            format!(
                "after the run: slots_busy {:?}, queued {:?}",
                self.slots_busy, self.queued
            ),
        );
        d
    }

    /// True when [`SoakReport::defects`] is empty.
    pub fn passed(&self) -> bool {
        self.defects().is_empty()
    }
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kb = |v: Option<u64>| v.map_or("?".into(), |v| format!("{v} kB"));
        let num = |v: Option<u32>| v.map_or("?".into(), |v| v.to_string());
        let map = |m: &BTreeMap<String, u64>| {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        };
        let s = &self.sent;
        writeln!(
            f,
            "soak: seed {}, {} requests from {} clients, {} slots",
            self.seed, self.requests, self.clients, self.slots
        )?;
        writeln!(
            f,
            "sent: {} normal, {} killed mid-stream, {} faulty ({} skipped) over {} connections",
            s.normal, s.killed, s.faulty, self.skipped, self.connections
        )?;
        writeln!(
            f,
            "completions: {} expected, {} received, {} wrong; {} tokens",
            self.completions_expected,
            self.completions_received,
            self.completions_wrong,
            self.tokens_received
        )?;
        writeln!(
            f,
            "duplicates: {} Done, {} events after Done, {} unexpected frames",
            self.duplicates, self.events_after_done, self.unexpected_frames
        )?;
        writeln!(f, "errors: {}", map(&self.errors))?;
        for (kind, ends) in &self.faults {
            writeln!(f, "  {kind}: {}", map(ends))?;
        }
        writeln!(
            f,
            "clients: {} busy refusals, {} timeouts, {} broken connections, {} tokens read by killed clients",
            self.refused_busy, self.timeouts, self.broken_connections, self.killed_tokens_read
        )?;
        writeln!(
            f,
            "daemon: {}, {}, {} panics; RSS {} -> {} (mid-run) -> {}; slots_busy {}, queued {} (settled in {} ms)",
            if self.daemon_alive { "alive" } else { "DEAD" },
            if self.clean_exit {
                "clean exit"
            } else {
                "UNCLEAN EXIT"
            },
            self.panics,
            kb(self.rss_start_kb),
            kb(self.rss_mid_kb),
            kb(self.rss_end_kb),
            num(self.slots_busy),
            num(self.queued),
            self.settle_ms
        )?;
        for line in &self.panic_lines {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "time: {:.1} s, {:.1} requests/s, {:.0} tokens/s",
            self.wall_s, self.requests_per_s, self.tokens_per_s
        )?;
        match self.defects().as_slice() {
            [] => write!(f, "result: PASS"),
            d => write!(f, "result: FAIL: {}", d.join("; ")),
        }
    }
}

/// Starts batchd (stderr to a file), runs the soak against it, stops it with SIGTERM, and
/// reports.
pub fn run(cfg: &SoakConfig) -> SoakReport {
    let scratch = temp_dir("soak");
    let log = scratch.path().join("batchd.stderr");
    let (slots, max_frame) = (cfg.slots.to_string(), cfg.max_frame.to_string());
    let mut daemon = Daemon::start_with_log(&["--slots", &slots, "--max-frame", &max_frame], &log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let plan = plan(cfg);
    let mut r = SoakReport {
        seed: cfg.seed,
        clients: cfg.clients,
        slots: cfg.slots,
        requests: cfg.requests,
        rss_start_kb: vm_rss_kb(daemon.pid()),
        ..SoakReport::default()
    };

    let started = Instant::now();
    let counts = rt.block_on(drive(
        daemon.socket().to_path_buf(),
        daemon.pid(),
        cfg,
        plan,
    ));
    let wall = started.elapsed().as_secs_f64();
    counts.fill(&mut r);
    r.wall_s = wall;
    r.requests_per_s = (r.sent.normal + r.sent.killed + r.sent.faulty) as f64 / wall;
    r.tokens_per_s = r.tokens_received as f64 / wall;

    let settle_start = Instant::now();
    if let Some(status) = rt.block_on(settle(daemon.socket(), cfg.op_timeout)) {
        r.slots_busy = Some(status.slots_busy);
        r.queued = Some(status.queued);
    }
    r.settle_ms = settle_start.elapsed().as_millis() as u64;
    r.rss_end_kb = vm_rss_kb(daemon.pid());
    r.daemon_alive = daemon.is_alive();
    if r.daemon_alive {
        r.clean_exit = daemon.terminate().success();
    }
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let panics: Vec<&str> = stderr.lines().filter(|l| l.contains("panicked")).collect();
    r.panics = panics.len() as u64;
    r.panic_lines = panics.iter().take(5).map(|l| l.to_string()).collect();
    r
}

/// The resident set size of a process, from `/proc/<pid>/status`.
pub fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// SplitMix64: small, seeded, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One connection's worth of work.
enum Job {
    /// Several requests on one connection, sent at once, then a status round trip.
    Normal(Vec<(RequestId, GenerateRequest)>),
    /// One long request whose client reads `tokens` tokens and drops the socket.
    Kill {
        id: RequestId,
        request: GenerateRequest,
        tokens: u32,
    },
    /// A connection that breaks the protocol.
    Fault(Fault),
}

/// Ways a connection breaks the protocol.
enum Fault {
    /// Random bytes instead of a hello, then end of stream.
    RandomBytes(Vec<u8>),
    /// After the hello, a length prefix over the limit.
    Oversized(u32),
    /// After the hello, the first part of a frame, then end of stream.
    Truncated(Vec<u8>),
    /// Another message where the hello belongs.
    NotHello(ClientMessage),
}

impl Fault {
    fn name(&self) -> &'static str {
        match self {
            Fault::RandomBytes(_) => "random_bytes",
            Fault::Oversized(_) => "oversized",
            Fault::Truncated(_) => "truncated",
            Fault::NotHello(_) => "not_hello",
        }
    }
}

const WORDS: [&str; 16] = [
    "the", "cat", "sat", "on", "a", "mat", "and", "then", "river", "stone", "blue", "42", "über",
    "🦀", "quickly", "\n",
];

fn prompt(rng: &mut Rng) -> String {
    match rng.range(0, 19) {
        0 => String::new(),
        1..=5 => rng.pick(&PROMPTS).to_string(),
        _ => {
            let n = rng.range(1, 8);
            let words: Vec<&str> = (0..n).map(|_| *rng.pick(&WORDS)).collect();
            words.join(" ")
        }
    }
}

/// The jobs of a run: each request's kind drawn from the seed, runs of normal requests
/// grouped 1–4 to a connection.
fn plan(cfg: &SoakConfig) -> Vec<Job> {
    #[derive(PartialEq)]
    enum Kind {
        Normal,
        Kill,
        Fault,
    }
    let mut rng = Rng(cfg.seed);
    let kinds: Vec<Kind> = (0..cfg.requests)
        .map(|_| match rng.unit() {
            u if u < cfg.fault_share => Kind::Fault,
            u if u < cfg.fault_share + cfg.kill_share => Kind::Kill,
            _ => Kind::Normal,
        })
        .collect();
    let mut jobs = Vec::new();
    let mut i = 0;
    while i < kinds.len() {
        match kinds[i] {
            Kind::Normal => {
                let want = rng.range(1, 4) as usize;
                let mut batch = Vec::new();
                let base = rng.next() >> 2;
                while i < kinds.len() && kinds[i] == Kind::Normal && batch.len() < want {
                    let max_tokens = rng.range(1, 32) as u32;
                    batch.push((
                        base + batch.len() as u64,
                        greedy(&prompt(&mut rng), max_tokens),
                    ));
                    i += 1;
                }
                jobs.push(Job::Normal(batch));
                continue;
            }
            Kind::Kill => jobs.push(Job::Kill {
                id: rng.next(),
                request: greedy(&prompt(&mut rng), rng.range(64, 256) as u32),
                tokens: rng.range(1, 3) as u32,
            }),
            Kind::Fault => jobs.push(Job::Fault(fault(&mut rng, cfg.max_frame))),
        }
        i += 1;
    }
    jobs
}

fn fault(rng: &mut Rng, max_frame: u32) -> Fault {
    match rng.range(0, 3) {
        0 => {
            let mut bytes = Vec::new();
            if rng.range(0, 1) == 0 {
                // A plausible length, then a payload of that length that is not a message.
                let n = rng.range(1, 64) as u32;
                bytes.extend_from_slice(&n.to_be_bytes());
                bytes.extend(rng.bytes(n as usize));
            } else {
                let n = rng.range(1, 512) as usize;
                bytes.extend(rng.bytes(n));
            }
            Fault::RandomBytes(bytes)
        }
        1 => Fault::Oversized(match rng.range(0, 2) {
            0 => max_frame + 1,
            1 => u32::MAX,
            _ => rng.range(max_frame as u64 + 1, u32::MAX as u64) as u32,
        }),
        2 => {
            let frame = encode_frame(&ClientMessage::Generate {
                id: 1,
                request: greedy(&prompt(rng), 8),
            })
            .expect("encode");
            let cut = rng.range(1, frame.len() as u64 - 1) as usize;
            Fault::Truncated(frame[..cut].to_vec())
        }
        _ => Fault::NotHello(match rng.range(0, 3) {
            0 => ClientMessage::Status,
            1 => ClientMessage::Trace,
            2 => ClientMessage::Cancel { id: rng.next() },
            _ => ClientMessage::Generate {
                id: rng.next(),
                request: greedy(&prompt(rng), 4),
            },
        }),
    }
}

/// Tallies of the clients, merged into the report at the end.
#[derive(Default)]
struct Counts {
    sent: Sent,
    skipped: u64,
    connections: u64,
    completions_received: u64,
    completions_wrong: u64,
    tokens_received: u64,
    duplicates: u64,
    events_after_done: u64,
    unexpected_frames: u64,
    refused_busy: u64,
    errors: BTreeMap<String, u64>,
    faults: BTreeMap<String, BTreeMap<String, u64>>,
    timeouts: u64,
    broken_connections: u64,
    killed_tokens_read: u64,
    rss_mid_kb: Option<u64>,
}

impl Counts {
    fn error(&mut self, code: ErrorCode) {
        *self.errors.entry(code.as_str().into()).or_default() += 1;
    }

    fn fill(self, r: &mut SoakReport) {
        r.completions_expected = self.sent.normal - self.refused_busy;
        r.sent = self.sent;
        r.skipped = self.skipped;
        r.connections = self.connections;
        r.completions_received = self.completions_received;
        r.completions_wrong = self.completions_wrong;
        r.tokens_received = self.tokens_received;
        r.duplicates = self.duplicates;
        r.events_after_done = self.events_after_done;
        r.unexpected_frames = self.unexpected_frames;
        r.refused_busy = self.refused_busy;
        r.errors = self.errors;
        r.faults = self.faults;
        r.timeouts = self.timeouts;
        r.broken_connections = self.broken_connections;
        r.killed_tokens_read = self.killed_tokens_read;
        r.rss_mid_kb = self.rss_mid_kb;
    }
}

/// Runs the plan on `cfg.clients` concurrent clients, each taking the next job in turn.
async fn drive(socket: PathBuf, pid: u32, cfg: &SoakConfig, plan: Vec<Job>) -> Counts {
    let total = plan.len();
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let deadline = Instant::now() + cfg.deadline;
    let op = cfg.op_timeout;
    let mut clients = Vec::new();
    for _ in 0..cfg.clients {
        let (plan, next, counts, socket) =
            (plan.clone(), next.clone(), counts.clone(), socket.clone());
        clients.push(tokio::spawn(async move {
            // The deadline is checked before taking a job, so every job past `next` is one
            // that never ran.
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if i == total / 2 {
                    counts.lock().unwrap().rss_mid_kb = vm_rss_kb(pid);
                }
                let mut c = Counts::default();
                run_job(&socket, &plan[i], op, &mut c).await;
                merge(&mut counts.lock().unwrap(), c);
            }
        }));
    }
    for c in clients {
        c.await.expect("client task");
    }
    let mut counts = Arc::try_unwrap(counts).ok().unwrap().into_inner().unwrap();
    for job in &plan[next.load(Ordering::Relaxed).min(total)..] {
        counts.skipped += match job {
            Job::Normal(reqs) => reqs.len() as u64,
            _ => 1,
        };
    }
    counts
}

fn merge(into: &mut Counts, c: Counts) {
    into.sent.normal += c.sent.normal;
    into.sent.killed += c.sent.killed;
    into.sent.faulty += c.sent.faulty;
    into.connections += c.connections;
    into.completions_received += c.completions_received;
    into.completions_wrong += c.completions_wrong;
    into.tokens_received += c.tokens_received;
    into.duplicates += c.duplicates;
    into.events_after_done += c.events_after_done;
    into.unexpected_frames += c.unexpected_frames;
    into.refused_busy += c.refused_busy;
    into.timeouts += c.timeouts;
    into.broken_connections += c.broken_connections;
    into.killed_tokens_read += c.killed_tokens_read;
    into.rss_mid_kb = into.rss_mid_kb.or(c.rss_mid_kb);
    for (code, n) in c.errors {
        *into.errors.entry(code).or_default() += n;
    }
    for (kind, ends) in c.faults {
        let slot = into.faults.entry(kind).or_default();
        for (end, n) in ends {
            *slot.entry(end).or_default() += n;
        }
    }
}

/// Why a client stopped early.
enum Stop {
    Timeout,
    Broken,
}

async fn within<T, E>(
    op: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Stop> {
    match tokio::time::timeout(op, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Stop::Broken),
        Err(_) => Err(Stop::Timeout),
    }
}

async fn send(s: &mut UnixStream, msg: &ClientMessage, op: Duration) -> Result<(), Stop> {
    let bytes = encode_frame(msg).expect("encode");
    within(op, s.write_all(&bytes)).await
}

/// The next frame; the end of the stream counts as broken.
async fn recv(s: &mut UnixStream, op: Duration) -> Result<ServerMessage, Stop> {
    within(op, read_frame(s, READ_LIMIT))
        .await?
        .ok_or(Stop::Broken)
}

/// Connects and says hello.
async fn open(socket: &Path, op: Duration, c: &mut Counts) -> Result<UnixStream, Stop> {
    c.connections += 1;
    let mut s = within(op, UnixStream::connect(socket)).await?;
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "soak".into(),
    };
    send(&mut s, &hello, op).await?;
    match recv(&mut s, op).await? {
        ServerMessage::Hello { .. } => Ok(s),
        ServerMessage::Error { code, .. } => {
            c.error(code);
            Err(Stop::Broken)
        }
        _ => {
            c.unexpected_frames += 1;
            Err(Stop::Broken)
        }
    }
}

async fn run_job(socket: &Path, job: &Job, op: Duration, c: &mut Counts) {
    let result = match job {
        Job::Normal(reqs) => normal(socket, reqs, op, c).await,
        Job::Kill {
            id,
            request,
            tokens,
        } => kill(socket, *id, request, *tokens, op, c).await,
        Job::Fault(f) => {
            c.sent.faulty += 1;
            let end = fault_conn(socket, f, op, c).await;
            *c.faults
                .entry(f.name().into())
                .or_default()
                .entry(end)
                .or_default() += 1;
            Ok(())
        }
    };
    match result {
        Ok(()) => {}
        Err(Stop::Timeout) => c.timeouts += 1,
        Err(Stop::Broken) => c.broken_connections += 1,
    }
}

/// What one normal request has received so far.
struct Progress {
    max_tokens: u32,
    tokens: u32,
    done: bool,
}

/// Sends every request of the job at once, reads until each has ended, then makes a
/// status round trip so that late duplicates are seen.
async fn normal(
    socket: &Path,
    reqs: &[(RequestId, GenerateRequest)],
    op: Duration,
    c: &mut Counts,
) -> Result<(), Stop> {
    let mut s = open(socket, op, c).await?;
    let mut progress = HashMap::new();
    for (id, request) in reqs {
        let msg = ClientMessage::Generate {
            id: *id,
            request: request.clone(),
        };
        send(&mut s, &msg, op).await?;
        c.sent.normal += 1;
        progress.insert(
            *id,
            Progress {
                max_tokens: request.max_tokens,
                tokens: 0,
                done: false,
            },
        );
    }
    let mut open_requests = reqs.len();
    while open_requests > 0 {
        let msg = recv(&mut s, op).await?;
        if account(msg, &mut progress, c) {
            open_requests -= 1;
        }
    }
    send(&mut s, &ClientMessage::Status, op).await?;
    loop {
        match recv(&mut s, op).await? {
            ServerMessage::Status(_) => return Ok(()),
            msg => {
                account(msg, &mut progress, c);
            }
        }
    }
}

/// Counts one frame of a normal connection; true when it ended a request.
fn account(
    msg: ServerMessage,
    progress: &mut HashMap<RequestId, Progress>,
    c: &mut Counts,
) -> bool {
    let id = match &msg {
        ServerMessage::Token { id, .. } | ServerMessage::Done { id, .. } => *id,
        ServerMessage::Error { id: Some(id), .. } => *id,
        ServerMessage::Error { id: None, code, .. } => {
            c.error(*code);
            return false;
        }
        _ => {
            c.unexpected_frames += 1;
            return false;
        }
    };
    let Some(p) = progress.get_mut(&id) else {
        c.unexpected_frames += 1;
        return false;
    };
    match msg {
        ServerMessage::Token { .. } if p.done => c.events_after_done += 1,
        ServerMessage::Token { .. } => {
            p.tokens += 1;
            c.tokens_received += 1;
        }
        ServerMessage::Done { .. } if p.done => c.duplicates += 1,
        ServerMessage::Done { done, .. } => {
            p.done = true;
            c.completions_received += 1;
            let right = done.finish_reason == FinishReason::Length
                && done.usage.completion_tokens == p.max_tokens
                && p.tokens == p.max_tokens;
            if !right {
                c.completions_wrong += 1;
            }
            return true;
        }
        ServerMessage::Error { code, .. } => {
            c.error(code);
            if p.done {
                c.events_after_done += 1;
            } else {
                p.done = true;
                if code == ErrorCode::Busy {
                    c.refused_busy += 1;
                }
                return true;
            }
        }
        _ => unreachable!("filtered above"),
    }
    false
}

/// Starts a long request, reads `tokens` tokens, and drops the socket without a cancel.
async fn kill(
    socket: &Path,
    id: RequestId,
    request: &GenerateRequest,
    tokens: u32,
    op: Duration,
    c: &mut Counts,
) -> Result<(), Stop> {
    let mut s = open(socket, op, c).await?;
    let msg = ClientMessage::Generate {
        id,
        request: request.clone(),
    };
    send(&mut s, &msg, op).await?;
    c.sent.killed += 1;
    let mut read = 0;
    while read < tokens {
        match recv(&mut s, op).await? {
            ServerMessage::Token { id: got, .. } if got == id => read += 1,
            ServerMessage::Error { code, .. } => {
                c.error(code);
                if code == ErrorCode::Busy {
                    break;
                }
                return Err(Stop::Broken);
            }
            _ => {
                c.unexpected_frames += 1;
                break;
            }
        }
    }
    c.killed_tokens_read += u64::from(read);
    drop(s);
    Ok(())
}

/// Runs one faulty connection; how it ended: the last connection error code, `closed`
/// when the daemon closed without one, or `hung`.
async fn fault_conn(socket: &Path, f: &Fault, op: Duration, c: &mut Counts) -> String {
    let opened = match f {
        Fault::RandomBytes(_) | Fault::NotHello(_) => {
            c.connections += 1;
            within(op, UnixStream::connect(socket)).await
        }
        Fault::Oversized(_) | Fault::Truncated(_) => open(socket, op, c).await,
    };
    let mut s = match opened {
        Ok(s) => s,
        Err(Stop::Timeout) => return "hung".into(),
        Err(Stop::Broken) => return "refused".into(),
    };
    // Writes may fail once the daemon has given up on us; its answer is what counts.
    let _ = match f {
        Fault::RandomBytes(bytes) | Fault::Truncated(bytes) => {
            let _ = within(op, s.write_all(bytes)).await;
            within(op, s.shutdown()).await
        }
        Fault::Oversized(len) => within(op, s.write_all(&len.to_be_bytes())).await,
        Fault::NotHello(msg) => send(&mut s, msg, op).await,
    };
    let mut end = "closed".to_string();
    loop {
        match tokio::time::timeout(op, read_frame::<_, ServerMessage>(&mut s, READ_LIMIT)).await {
            Err(_) => return "hung".into(),
            Ok(Ok(Some(ServerMessage::Error { code, .. }))) => {
                c.error(code);
                end = code.as_str().into();
            }
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) | Ok(Err(_)) => return end,
        }
    }
}

/// Polls the daemon's status until no slot is busy and nothing is queued, or `timeout`
/// passes; the last status seen.
async fn settle(socket: &Path, timeout: Duration) -> Option<StatusReport> {
    let mut c = Counts::default();
    let mut s = open(socket, timeout, &mut c).await.ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        send(&mut s, &ClientMessage::Status, timeout).await.ok()?;
        let status = loop {
            if let ServerMessage::Status(st) = recv(&mut s, timeout).await.ok()? {
                break st;
            }
        };
        if (status.slots_busy == 0 && status.queued == 0) || Instant::now() >= deadline {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchd_protocol::{Done, Usage};

    #[test]
    fn the_plan_follows_the_seed_and_the_shares() {
        let cfg = SoakConfig::default();
        let kinds = |jobs: &[Job]| -> (usize, usize, usize) {
            let mut k = (0, 0, 0);
            for j in jobs {
                match j {
                    Job::Normal(r) => k.0 += r.len(),
                    Job::Kill { .. } => k.1 += 1,
                    Job::Fault(_) => k.2 += 1,
                }
            }
            k
        };
        let (a, b) = (plan(&cfg), plan(&cfg));
        assert_eq!(kinds(&a), kinds(&b));
        let (normal, killed, faulty) = kinds(&a);
        assert_eq!(normal + killed + faulty, 2000);
        assert!((150..250).contains(&killed), "{killed}");
        assert!((5..40).contains(&faulty), "{faulty}");
        let other = plan(&SoakConfig { seed: 2, ..cfg });
        assert_ne!(kinds(&a), kinds(&other));
    }

    fn done(n: u32) -> ServerMessage {
        ServerMessage::Done {
            id: 5,
            done: Done {
                finish_reason: FinishReason::Length,
                usage: Usage {
                    prompt_tokens: 1,
                    completion_tokens: n,
                    cached_tokens: 0,
                },
                timings: Default::default(),
                steps: Default::default(),
                final_text: String::new(),
                output: None,
            },
        }
    }

    #[test]
    fn duplicates_late_tokens_and_short_counts_are_caught() {
        let token = || ServerMessage::Token {
            id: 5,
            token: 0,
            text: String::new(),
            logprobs: None,
        };
        let fresh = || {
            HashMap::from([(
                5,
                Progress {
                    max_tokens: 2,
                    tokens: 0,
                    done: false,
                },
            )])
        };
        let (mut p, mut c) = (fresh(), Counts::default());
        assert!(!account(token(), &mut p, &mut c));
        assert!(!account(token(), &mut p, &mut c));
        assert!(account(done(2), &mut p, &mut c));
        assert_eq!((c.completions_received, c.completions_wrong), (1, 0));
        assert!(!account(done(2), &mut p, &mut c));
        assert!(!account(token(), &mut p, &mut c));
        assert_eq!((c.duplicates, c.events_after_done), (1, 1));

        // One token short, though usage says otherwise.
        let (mut p, mut c) = (fresh(), Counts::default());
        account(token(), &mut p, &mut c);
        assert!(account(done(2), &mut p, &mut c));
        assert_eq!(c.completions_wrong, 1);
    }
}
