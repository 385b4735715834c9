//! The engine thread's loop: commands in, steps run, events routed out.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use batchd_protocol::{
    ErrorCode, GenerateRequest, ModelInfo, Output, RequestId, ServerMessage, StatusReport,
    StepSequence, StepTrace,
};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::stats::Throughput;
use super::{init_backend, load_model, LlamaEngine};
use crate::policy::{Event, RequestKey, Scheduler, SchedulerConfig, SeqKind, Submission, Token};
use crate::settings::EngineSettings;
use batchd_protocol::validate::validate;

/// Longest an idle engine waits, after the first command wakes it, for more to arrive.
const WAKE_WINDOW: Duration = Duration::from_millis(5);
/// The wait ends early once no command arrived for this long.
const WAKE_QUIET: Duration = Duration::from_millis(1);

/// Identifies one client connection.
pub type ConnId = u64;

/// What a connection's writer task receives.
// Token frames dominate and are small; boxing every message to shrink the rare status
// reply would cost an allocation per token.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    /// A frame to send.
    Msg(ServerMessage),
    /// Send what came before, then close the connection.
    Close,
}

/// Channel to one connection's writer.
pub type OutTx = UnboundedSender<Outgoing>;

/// What async code asks of the engine thread.
pub enum Command {
    /// Start a request; its events go to `out` tagged with `id`.
    Submit {
        conn: ConnId,
        id: RequestId,
        request: Box<GenerateRequest>,
        out: OutTx,
        received: Instant,
    },
    /// Cancel a connection's request.
    Cancel { conn: ConnId, id: RequestId },
    /// The connection went away: cancel all its requests.
    ConnClosed { conn: ConnId },
    /// Send a status report to `out`.
    Status { out: OutTx },
    /// Send a step trace to `out` after every step until it closes.
    Trace { out: OutTx },
    /// Refuse new work and cancel queued requests; running ones finish. The thread ends
    /// when nothing is left.
    Close,
    /// Cancel everything still running.
    CancelAll,
}

/// The async side's handle on the engine thread.
pub struct EngineHandle {
    tx: std_mpsc::Sender<Command>,
    thread: JoinHandle<()>,
    /// The model being served.
    pub model: ModelInfo,
}

impl EngineHandle {
    /// A sender for commands (cheap to clone, never blocks).
    pub fn sender(&self) -> std_mpsc::Sender<Command> {
        self.tx.clone()
    }

    /// Waits for the thread to end (after [`Command::Close`] and the work drained).
    pub fn join(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

/// Starts the engine thread: loads the model and creates the context there, and returns
/// once it is ready to serve (or failed to load).
pub fn spawn(settings: EngineSettings) -> anyhow::Result<EngineHandle> {
    settings.validate().map_err(anyhow::Error::msg)?;
    let (tx, rx) = std_mpsc::channel();
    let (ready_tx, ready_rx) = std_mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("batchd-engine".into())
        .spawn(move || run(settings, rx, ready_tx))
        .context("starting the engine thread")?;
    match ready_rx.recv() {
        Ok(Ok(model)) => Ok(EngineHandle { tx, thread, model }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(anyhow::anyhow!("the engine thread died while starting"))
        }
    }
}

fn run(
    settings: EngineSettings,
    rx: std_mpsc::Receiver<Command>,
    ready: std_mpsc::SyncSender<anyhow::Result<ModelInfo>>,
) {
    let setup = || -> anyhow::Result<_> {
        let backend = init_backend()?;
        let loaded = load_model(backend, &settings.model, settings.gpu_layers)?;
        Ok((backend, loaded))
    };
    let (backend, loaded) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let n_ctx_train = loaded.model.n_ctx_train();
    let mut engine = match LlamaEngine::new(backend, &loaded, &settings) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let kv_cells = engine.n_ctx();
    let n_ctx_seq = engine.n_ctx_seq();
    let max_positions = n_ctx_seq.min(n_ctx_train);
    let scheduler = Scheduler::new(SchedulerConfig {
        slots: settings.slots as usize,
        policy: settings.policy,
        step_budget: settings.step_budget as usize,
        prefill_chunk: settings.prefill_chunk,
        prefill_pace: settings.prefill_pace,
        queue_capacity: settings.queue_capacity as usize,
        max_positions,
        kv_cells,
    });
    let status = StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        model: loaded.info.clone(),
        policy: settings.policy.as_str().to_string(),
        slots_total: settings.slots,
        queue_capacity: settings.queue_capacity,
        n_ctx: kv_cells,
        n_ctx_seq,
        backend: loaded.device.backend.clone(),
        device: loaded.device.name.clone(),
        gpu_layers: loaded.device.gpu_layers,
        device_sampling: engine.device_sampling(),
        ..StatusReport::default()
    };
    tracing::info!(
        model = %loaded.info.name, slots = settings.slots, n_ctx = kv_cells, n_ctx_seq,
        policy = settings.policy.as_str(), threads = settings.threads_for(&loaded.device),
        backend = %loaded.device.backend, device = %loaded.device.name,
        gpu_layers = loaded.device.gpu_layers, device_sampling = engine.device_sampling(),
        "engine ready"
    );
    let _ = ready.send(Ok(loaded.info.clone()));
    let mut worker = Worker {
        model: &loaded.model,
        scheduler,
        routes: HashMap::new(),
        by_conn: HashMap::new(),
        next_key: 1,
        status,
        started: Instant::now(),
        throughput: Throughput::default(),
        closed: false,
        tracers: Vec::new(),
    };
    worker.serve(&mut engine, rx);
}

/// Where a request's events go.
struct Route {
    conn: ConnId,
    id: RequestId,
    out: OutTx,
    /// Collected output of a non-streaming request (`None` when streaming).
    output: Option<Output>,
}

struct Worker<'m> {
    model: &'m LlamaModel,
    scheduler: Scheduler,
    routes: HashMap<RequestKey, Route>,
    by_conn: HashMap<(ConnId, RequestId), RequestKey>,
    next_key: RequestKey,
    status: StatusReport,
    started: Instant,
    throughput: Throughput,
    closed: bool,
    /// Connections subscribed to step traces.
    tracers: Vec<OutTx>,
}

impl Worker<'_> {
    fn serve(&mut self, engine: &mut LlamaEngine<'_>, rx: std_mpsc::Receiver<Command>) {
        loop {
            let cmd = if self.scheduler.has_work() {
                match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => None,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.scheduler.cancel_all();
                        None
                    }
                }
            } else if self.closed {
                break;
            } else {
                match rx.recv() {
                    Ok(cmd) => {
                        // Waking from idle: requests sent together (one client's batch,
                        // a burst of clients) arrive microseconds apart. Gather them so
                        // they start in the same step and, under the static policy, in
                        // the same wave.
                        self.handle(cmd);
                        let window_ends = Instant::now() + WAKE_WINDOW;
                        while let Some(left) = window_ends.checked_duration_since(Instant::now()) {
                            match rx.recv_timeout(left.min(WAKE_QUIET)) {
                                Ok(cmd) => self.handle(cmd),
                                Err(_) => break,
                            }
                        }
                        self.route_events();
                        continue;
                    }
                    Err(_) => break,
                }
            };
            match cmd {
                Some(cmd) => self.handle(cmd),
                None => {
                    let started = Instant::now();
                    self.scheduler.step(engine);
                    self.status.device_sampled_tokens = engine.device_sampled_tokens();
                    let now = Instant::now();
                    self.throughput
                        .record(now, self.scheduler.tokens_generated());
                    if !self.tracers.is_empty() {
                        self.send_trace(now.duration_since(started));
                    }
                }
            }
            tracing::trace_span!("stream").in_scope(|| self.route_events());
        }
        tracing::debug!("engine thread done");
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Submit {
                conn,
                id,
                request,
                out,
                received,
            } => self.submit(conn, id, *request, out, received),
            Command::Cancel { conn, id } => {
                if let Some(&key) = self.by_conn.get(&(conn, id)) {
                    self.scheduler.cancel(key);
                }
            }
            Command::ConnClosed { conn } => {
                let keys: Vec<RequestKey> = self
                    .by_conn
                    .iter()
                    .filter(|((c, _), _)| *c == conn)
                    .map(|(_, &k)| k)
                    .collect();
                for key in keys {
                    self.scheduler.cancel(key);
                }
            }
            Command::Status { out } => {
                let _ = out.send(Outgoing::Msg(ServerMessage::Status(self.report())));
            }
            Command::Trace { out } => {
                self.tracers.push(out);
                self.scheduler.set_trace(true);
            }
            Command::Close => {
                self.closed = true;
                self.scheduler.close();
            }
            Command::CancelAll => {
                self.closed = true;
                self.scheduler.cancel_all();
            }
        }
    }

    fn submit(
        &mut self,
        conn: ConnId,
        id: RequestId,
        request: GenerateRequest,
        out: OutTx,
        received: Instant,
    ) {
        let refuse = |code: ErrorCode, message: String| {
            let _ = out.send(Outgoing::Msg(ServerMessage::Error {
                id: Some(id),
                code,
                message,
            }));
        };
        if self.by_conn.contains_key(&(conn, id)) {
            return refuse(
                ErrorCode::DuplicateId,
                format!("request id {id} is already running on this connection"),
            );
        }
        if let Err(message) = validate(&request) {
            return refuse(ErrorCode::InvalidRequest, message);
        }
        let key = self.next_key;
        self.next_key += 1;
        let submission = Submission {
            key,
            prompt: self.tokenize(&request.prompt),
            max_tokens: request.max_tokens,
            sampling: request.sampling,
            stop: request.stop,
            ignore_eos: request.ignore_eos,
            received,
        };
        if let Err(rejection) = self.scheduler.submit(submission) {
            return refuse(rejection.code(), rejection.to_string());
        }
        self.by_conn.insert((conn, id), key);
        self.routes.insert(
            key,
            Route {
                conn,
                id,
                out,
                output: (!request.stream).then(Output::default),
            },
        );
    }

    /// Prompt text to tokens; an empty prompt starts from the beginning-of-text token.
    fn tokenize(&self, prompt: &str) -> Vec<Token> {
        let vocab = self.model.vocab();
        let mut tokens: Vec<Token> = Vec::new();
        if prompt.is_empty() || vocab.should_add_bos() {
            tokens.push(vocab.bos().0 as Token);
        }
        tokens.extend(
            vocab
                .tokenize(prompt.as_bytes(), false, false)
                .into_iter()
                .map(|LlamaToken(t)| t as Token),
        );
        tokens
    }

    fn route_events(&mut self) {
        let mut cancel = Vec::new();
        for event in self.scheduler.drain_events() {
            match event {
                Event::Token { key, token, text } => {
                    let Some(route) = self.routes.get_mut(&key) else {
                        continue;
                    };
                    match route.output.as_mut() {
                        Some(output) => {
                            output.tokens.push(token);
                            output.text.push_str(&text);
                        }
                        None => {
                            let msg = ServerMessage::Token {
                                id: route.id,
                                token,
                                text,
                            };
                            if route.out.send(Outgoing::Msg(msg)).is_err() {
                                cancel.push(key); // the connection is gone
                            }
                        }
                    }
                }
                Event::Done { key, mut done } => {
                    let Some(route) = self.routes.remove(&key) else {
                        continue;
                    };
                    self.by_conn.remove(&(route.conn, route.id));
                    if let Some(mut output) = route.output {
                        output.text.push_str(&done.final_text);
                        done.output = Some(output);
                    }
                    let _ = route
                        .out
                        .send(Outgoing::Msg(ServerMessage::Done { id: route.id, done }));
                }
                Event::Failed { key, message } => {
                    let Some(route) = self.routes.remove(&key) else {
                        continue;
                    };
                    self.by_conn.remove(&(route.conn, route.id));
                    tracing::error!(request = route.id, %message, "request failed in the engine");
                    let _ = route.out.send(Outgoing::Msg(ServerMessage::Error {
                        id: Some(route.id),
                        code: ErrorCode::Internal,
                        message,
                    }));
                }
            }
        }
        for key in cancel {
            self.scheduler.cancel(key);
        }
    }

    /// Sends the last step's report to every trace subscriber still listening.
    fn send_trace(&mut self, took: std::time::Duration) {
        let r = self.scheduler.last_report();
        let trace = StepTrace {
            step: r.step,
            n_tokens: r.n_tokens as u32,
            passes: r.passes,
            sequences: r
                .entries
                .iter()
                .map(|e| StepSequence {
                    slot: e.slot as u32,
                    request: e.key,
                    prefill: match e.kind {
                        SeqKind::Prefill(n) => Some(n),
                        SeqKind::Decode => None,
                    },
                    pos: e.pos,
                })
                .collect(),
            micros: took.as_micros() as u64,
        };
        self.tracers.retain(|out| {
            out.send(Outgoing::Msg(ServerMessage::Step(trace.clone())))
                .is_ok()
        });
        if self.tracers.is_empty() {
            self.scheduler.set_trace(false);
        }
    }

    fn report(&self) -> StatusReport {
        let now = Instant::now();
        StatusReport {
            slots_busy: self.scheduler.busy_slots() as u32,
            queued: self.scheduler.queued() as u32,
            tokens_generated: self.scheduler.tokens_generated(),
            tokens_per_second: self.throughput.rate(now),
            steps: self.scheduler.steps(),
            uptime_s: now.duration_since(self.started).as_secs_f64(),
            ..self.status.clone()
        }
    }
}
