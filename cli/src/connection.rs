//! The state one connection's handles share: which requests wait for events, status
//! and trace waiters, and why the connection ended. The reader task routes frames
//! through it; [`Client`](crate::Client), [`Generation`](crate::Generation) and
//! [`TraceStream`](crate::TraceStream) only use its methods.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use batchd_protocol::{ErrorCode, RequestId, ServerMessage, StatusReport, StepTrace};
use tokio::sync::{mpsc, oneshot};

use crate::error::ClientError;
use crate::generation::Event;

/// State shared by a connection's client handles, generations and tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    next_id: AtomicU64,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Requests still waiting for their `Done` or `Error`.
    requests: HashMap<RequestId, mpsc::UnboundedSender<Item>>,
    /// Status calls waiting, oldest first.
    statuses: VecDeque<oneshot::Sender<Result<StatusReport, ClientError>>>,
    /// Local receivers of step traces.
    tracers: Vec<mpsc::UnboundedSender<Result<StepTrace, Lost>>>,
    /// Whether `Trace` was sent on this connection.
    trace_subscribed: bool,
    /// Why the connection ended, once it has.
    closed: Option<Lost>,
}

/// What a generation's channel carries.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Event),
    Lost(Lost),
}

/// Why a connection ended.
#[derive(Clone, Debug)]
pub(crate) enum Lost {
    /// The daemon sent a connection-level error.
    Server { code: ErrorCode, message: String },
    /// The stream closed or broke.
    Disconnected(String),
}

impl Lost {
    pub(crate) fn to_error(&self) -> ClientError {
        match self.clone() {
            Lost::Server { code, message } => ClientError::Server { code, message },
            Lost::Disconnected(why) => ClientError::Disconnected(why),
        }
    }

    pub(crate) fn to_event(&self) -> Event {
        match self.clone() {
            Lost::Server { code, message } => Event::Error { code, message },
            Lost::Disconnected(why) => Event::Error {
                code: ErrorCode::Internal,
                message: format!("connection to batchd lost: {why}"),
            },
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, unless the connection has ended: then why it did.
    fn lock_open(&self) -> Result<MutexGuard<'_, State>, ClientError> {
        let st = self.lock();
        match &st.closed {
            Some(lost) => Err(lost.to_error()),
            None => Ok(st),
        }
    }

    /// True once the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Gives a new request its id and the channel its events go to; fails once the
    /// connection has ended.
    pub(crate) fn open_request(
        &self,
        events: mpsc::UnboundedSender<Item>,
    ) -> Result<RequestId, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock_open()?;
        st.requests.insert(id, events);
        Ok(id)
    }

    /// Whether request `id` is still waiting for its end.
    pub(crate) fn is_open(&self, id: RequestId) -> bool {
        self.lock().requests.contains_key(&id)
    }

    /// Stops routing request `id`'s events; true if it had not ended yet.
    pub(crate) fn forget(&self, id: RequestId) -> bool {
        self.lock().requests.remove(&id).is_some()
    }

    /// Queues a status waiter and sends the request (`send`, true on success) under one
    /// lock, so waiters stay in request order.
    pub(crate) fn wait_status(
        &self,
        waiter: oneshot::Sender<Result<StatusReport, ClientError>>,
        send: impl FnOnce() -> bool,
    ) -> Result<(), ClientError> {
        let mut st = self.sent(self.lock_open()?, send)?;
        st.statuses.push_back(waiter);
        Ok(())
    }

    /// Adds a local receiver of step traces, subscribing the connection (`subscribe`,
    /// true on success) the first time.
    pub(crate) fn add_tracer(
        &self,
        tracer: mpsc::UnboundedSender<Result<StepTrace, Lost>>,
        subscribe: impl FnOnce() -> bool,
    ) -> Result<(), ClientError> {
        let mut st = self.lock_open()?;
        if !st.trace_subscribed {
            st = self.sent(st, subscribe)?;
            st.trace_subscribed = true;
        }
        st.tracers.push(tracer);
        Ok(())
    }

    /// Runs `send` (true on success) while `st` stays locked; a failed send means the
    /// connection's writer is gone.
    fn sent<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        send: impl FnOnce() -> bool,
    ) -> Result<MutexGuard<'a, State>, ClientError> {
        if send() {
            Ok(st)
        } else {
            drop(st);
            Err(self.closed_error())
        }
    }

    pub(crate) fn closed_error(&self) -> ClientError {
        match &self.lock().closed {
            Some(lost) => lost.to_error(),
            None => ClientError::Disconnected("the connection's writer stopped".into()),
        }
    }

    /// Routes one message; returns why the connection ends if it does.
    pub(crate) fn dispatch(&self, msg: ServerMessage) -> Option<Lost> {
        let mut st = self.lock();
        match msg {
            ServerMessage::Token {
                id,
                token,
                text,
                logprobs,
            } => {
                if let Some(tx) = st.requests.get(&id) {
                    let event = Event::Token {
                        token,
                        text,
                        logprobs,
                    };
                    let _ = tx.send(Item::Event(event));
                }
            }
            ServerMessage::Done { id, done } => {
                if let Some(tx) = st.requests.remove(&id) {
                    let _ = tx.send(Item::Event(Event::Done(done)));
                }
            }
            ServerMessage::Error {
                id: Some(id),
                code,
                message,
            } => {
                if let Some(tx) = st.requests.remove(&id) {
                    let _ = tx.send(Item::Event(Event::Error { code, message }));
                }
            }
            ServerMessage::Error {
                id: None,
                code,
                message,
            } => return Some(Lost::Server { code, message }),
            ServerMessage::Status(report) => {
                if let Some(tx) = st.statuses.pop_front() {
                    let _ = tx.send(Ok(report));
                }
            }
            ServerMessage::Step(step) => st.tracers.retain(|tx| tx.send(Ok(step.clone())).is_ok()),
            // A second hello means nothing to us.
            ServerMessage::Hello { .. } => {}
        }
        None
    }

    /// Ends the connection: every waiter learns why, later calls fail. Idempotent.
    pub(crate) fn fail(&self, lost: Lost) {
        let mut st = self.lock();
        if st.closed.is_some() {
            return;
        }
        for (_, tx) in st.requests.drain() {
            let _ = tx.send(Item::Lost(lost.clone()));
        }
        for tx in st.statuses.drain(..) {
            let _ = tx.send(Err(lost.to_error()));
        }
        for tx in st.tracers.drain(..) {
            let _ = tx.send(Err(lost.clone()));
        }
        st.closed = Some(lost);
    }
}
