//! A subscription to the daemon's per-step traces.

use std::sync::Arc;

use batchd_protocol::{ClientMessage, StepTrace};
use tokio::sync::mpsc;

use crate::connection::{Lost, Shared};
use crate::error::ClientError;

/// Step traces as the daemon sends them, returned by
/// [`Client::trace`](crate::Client::trace). Keeps its connection open while it lives.
#[derive(Debug)]
pub struct TraceStream {
    rx: mpsc::UnboundedReceiver<Result<StepTrace, Lost>>,
    /// Keeps the connection's writer, and so the connection, alive.
    _conn: mpsc::UnboundedSender<ClientMessage>,
    shared: Arc<Shared>,
}

impl TraceStream {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Result<StepTrace, Lost>>,
        conn: mpsc::UnboundedSender<ClientMessage>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            rx,
            _conn: conn,
            shared,
        }
    }

    /// The next step, in step order. Steps only come while the engine works, so this may
    /// wait indefinitely on an idle daemon. Fails once the connection has ended.
    pub async fn next(&mut self) -> Result<StepTrace, ClientError> {
        match self.rx.recv().await {
            Some(Ok(step)) => Ok(step),
            Some(Err(lost)) => Err(lost.to_error()),
            None => Err(self.shared.closed_error()),
        }
    }
}
