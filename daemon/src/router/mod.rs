//! The request router: the one internal API every front door (the bincode socket today)
//! submits to. It owns a request's whole life on the engine thread: admission (validation,
//! duplicate ids, tokenizing), routing the scheduler's events to the request's
//! [`EventSink`], cancellation (by id, client gone, sink gone), step traces and status.
//!
//! Plain Rust over any [`Engine`]: the unit tests drive it with the fake engine, and
//! `crate::engine` only loads the model and hands it a [`crate::engine::LlamaEngine`].

mod stats;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use batchd_protocol::validate::validate;
use batchd_protocol::{
    Done, ErrorCode, GenerateRequest, Output, RequestId, StatusReport, StepSequence, StepTrace,
    TokenLogprobs,
};

use crate::policy::{Engine, Event, RequestKey, Scheduler, SeqKind, Submission, Token};
use stats::Throughput;

/// Longest an idle engine waits, after the first command wakes it, for more to arrive.
const WAKE_WINDOW: Duration = Duration::from_millis(5);
/// The wait ends early once no command arrived for this long.
const WAKE_QUIET: Duration = Duration::from_millis(1);

/// Identifies one client of a front door (a socket connection); request ids are the
/// client's own and only unique per client.
pub type ClientId = u64;

/// What a front door hears about one request, in order: tokens, then one `Done` or one
/// `Error`.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestEvent {
    /// A generated token and the text it completes (possibly empty), with its
    /// log-probabilities when asked for. Never sent for a non-streaming request: its
    /// output comes in `Done`.
    Token {
        token: Token,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    /// It finished.
    Done(Done),
    /// It was refused, or failed in the engine.
    Error { code: ErrorCode, message: String },
}

/// Where one request's events go. Returns false once nobody listens; the request is then
/// cancelled.
pub type EventSink = Box<dyn FnMut(RequestEvent) -> bool + Send>;
/// Where step traces go, after every step. Returns false once nobody listens.
pub type TraceSink = Box<dyn FnMut(&StepTrace) -> bool + Send>;
/// Receives one status report.
pub type StatusReply = Box<dyn FnOnce(StatusReport) + Send>;

/// A request as a front door hands it over.
pub struct Submit {
    pub client: ClientId,
    pub id: RequestId,
    pub request: GenerateRequest,
    /// When the front door received it; all timings count from here.
    pub received: Instant,
    pub events: EventSink,
}

/// What front doors ask of the engine thread.
pub enum Command {
    /// Start a request.
    Submit(Box<Submit>),
    /// Cancel a client's request.
    Cancel { client: ClientId, id: RequestId },
    /// The client went away: cancel all its requests.
    ClientGone { client: ClientId },
    /// Report status.
    Status(StatusReply),
    /// Send a step trace after every step until the sink says stop.
    Trace(TraceSink),
    /// Refuse new work and cancel queued requests; running ones finish. The engine thread
    /// ends when nothing is left.
    Close,
    /// Cancel everything still running.
    CancelAll,
}

/// Where a request's events go.
struct Route {
    client: ClientId,
    id: RequestId,
    events: EventSink,
    /// Collected output of a non-streaming request (`None` when streaming).
    output: Option<Output>,
}

/// Requests in, events out, around one scheduler and the engine it drives.
pub struct Router<E: Engine> {
    engine: E,
    scheduler: Scheduler,
    routes: HashMap<RequestKey, Route>,
    by_client: HashMap<(ClientId, RequestId), RequestKey>,
    next_key: RequestKey,
    /// The fixed part of every status report (model, settings).
    status: StatusReport,
    started: Instant,
    throughput: Throughput,
    closed: bool,
    tracers: Vec<TraceSink>,
}

impl<E: Engine> Router<E> {
    /// A router with nothing running; `status` holds what never changes (model, settings).
    pub fn new(engine: E, scheduler: Scheduler, status: StatusReport) -> Self {
        Self {
            engine,
            scheduler,
            routes: HashMap::new(),
            by_client: HashMap::new(),
            next_key: 1,
            status,
            started: Instant::now(),
            throughput: Throughput::default(),
            closed: false,
            tracers: Vec::new(),
        }
    }

    /// The engine, for inspection.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// True while any request is queued or running.
    pub fn has_work(&self) -> bool {
        self.scheduler.has_work()
    }

    /// Serves commands until closed (or every sender is gone) and the work has drained.
    pub fn serve(&mut self, rx: &Receiver<Command>) {
        loop {
            let cmd = if self.scheduler.has_work() {
                match rx.try_recv() {
                    Ok(cmd) => Some(cmd),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
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
                None => self.run_step(),
            }
            tracing::trace_span!("stream").in_scope(|| self.route_events());
            self.scheduler.save_ended(&mut self.engine);
        }
        tracing::debug!("engine thread done");
    }

    /// Runs one step and sends its trace; events stay until [`Router::route_events`].
    fn run_step(&mut self) {
        let started = Instant::now();
        self.scheduler.step(&mut self.engine);
        let now = Instant::now();
        self.throughput
            .record(now, self.scheduler.tokens_generated());
        if !self.tracers.is_empty() {
            self.send_trace(now.duration_since(started));
        }
    }

    /// Runs one step and routes its events.
    pub fn step(&mut self) {
        self.run_step();
        self.route_events();
        self.scheduler.save_ended(&mut self.engine);
    }

    /// Acts on one command. Refusals are sent at once; other events wait for
    /// [`Router::route_events`].
    pub fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(submit) => self.submit(*submit),
            Command::Cancel { client, id } => {
                if let Some(&key) = self.by_client.get(&(client, id)) {
                    self.scheduler.cancel(key);
                }
            }
            Command::ClientGone { client } => {
                let keys: Vec<RequestKey> = self
                    .by_client
                    .iter()
                    .filter(|((c, _), _)| *c == client)
                    .map(|(_, &k)| k)
                    .collect();
                for key in keys {
                    self.scheduler.cancel(key);
                }
            }
            Command::Status(reply) => reply(self.report()),
            Command::Trace(sink) => {
                self.tracers.push(sink);
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

    fn submit(&mut self, submit: Submit) {
        let Submit {
            client,
            id,
            request,
            received,
            mut events,
        } = submit;
        let mut refuse = |code: ErrorCode, message: String| {
            events(RequestEvent::Error { code, message });
        };
        if self.by_client.contains_key(&(client, id)) {
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
            prompt: self.engine.tokenize(&request.prompt),
            max_tokens: request.max_tokens,
            sampling: request.sampling,
            stop: request.stop,
            ignore_eos: request.ignore_eos,
            logprobs: request.logprobs,
            received,
        };
        if let Err(rejection) = self.scheduler.submit(submission) {
            return refuse(rejection.code(), rejection.to_string());
        }
        self.by_client.insert((client, id), key);
        self.routes.insert(
            key,
            Route {
                client,
                id,
                events,
                output: (!request.stream).then(Output::default),
            },
        );
    }

    /// Sends the scheduler's events to their requests' sinks; a request whose sink is
    /// gone is cancelled.
    pub fn route_events(&mut self) {
        let mut cancel = Vec::new();
        for event in self.scheduler.drain_events() {
            match event {
                Event::Token {
                    key,
                    token,
                    text,
                    logprobs,
                } => {
                    let Some(route) = self.routes.get_mut(&key) else {
                        continue;
                    };
                    match route.output.as_mut() {
                        Some(output) => {
                            output.tokens.push(token);
                            output.text.push_str(&text);
                            output.logprobs.extend(logprobs);
                        }
                        None => {
                            let event = RequestEvent::Token {
                                token,
                                text,
                                logprobs,
                            };
                            if !(route.events)(event) {
                                cancel.push(key);
                            }
                        }
                    }
                }
                Event::Done { key, mut done } => {
                    let Some(mut route) = self.routes.remove(&key) else {
                        continue;
                    };
                    self.by_client.remove(&(route.client, route.id));
                    if let Some(mut output) = route.output {
                        output.text.push_str(&done.final_text);
                        done.output = Some(output);
                    }
                    (route.events)(RequestEvent::Done(done));
                }
                Event::Failed { key, message } => {
                    let Some(mut route) = self.routes.remove(&key) else {
                        continue;
                    };
                    self.by_client.remove(&(route.client, route.id));
                    tracing::error!(request = route.id, %message, "request failed in the engine");
                    (route.events)(RequestEvent::Error {
                        code: ErrorCode::Internal,
                        message,
                    });
                }
            }
        }
        for key in cancel {
            self.scheduler.cancel(key);
        }
    }

    /// Sends the last step's report to every trace subscriber still listening.
    fn send_trace(&mut self, took: Duration) {
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
                    reused: e.reused,
                })
                .collect(),
            micros: took.as_micros() as u64,
        };
        self.tracers.retain_mut(|sink| sink(&trace));
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
            device_sampled_tokens: self.engine.device_sampled_tokens(),
            prefix_cache: self.scheduler.prefix_status(),
            ..self.status.clone()
        }
    }
}
