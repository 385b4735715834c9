//! The engine thread's launcher: loads the model and creates the context on that thread,
//! then hands both to the [`Router`], which serves commands until drained.

use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use batchd_protocol::{ModelInfo, StatusReport};

use super::{init_backend, load_model, LlamaEngine};
use crate::policy::{Scheduler, SchedulerConfig};
use crate::router::{Command, Router};
use crate::settings::{memory_available, prefix_cache_default, EngineSettings};

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

/// Set only by the e2e tests: the engine thread waits for this file to exist before it
/// loads the model, so a test can watch the daemon while it loads without racing a clock.
pub const LOAD_GATE_ENV: &str = "BATCHD_TEST_LOAD_GATE";

fn wait_for_load_gate() {
    if let Some(gate) = std::env::var_os(LOAD_GATE_ENV) {
        while !Path::new(&gate).exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn run(
    settings: EngineSettings,
    rx: std_mpsc::Receiver<Command>,
    ready: std_mpsc::SyncSender<anyhow::Result<ModelInfo>>,
) {
    wait_for_load_gate();
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
    let engine = match LlamaEngine::new(backend, &loaded, &settings) {
        Ok(e) => e,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let kv_cells = engine.n_ctx();
    let n_ctx_seq = engine.n_ctx_seq();
    let scheduler = Scheduler::new(SchedulerConfig {
        slots: settings.slots as usize,
        policy: settings.policy,
        step_budget: settings.step_budget() as usize,
        prefill_chunk: settings.prefill_chunk,
        prefill_pace: settings.prefill_pace_on(&loaded.device),
        queue_capacity: settings.queue_capacity as usize,
        max_positions: n_ctx_seq.min(n_ctx_train.saturating_sub(engine.reserved_positions())),
        kv_cells,
        prefix_cache_bytes: settings.prefix_cache_mb.map_or_else(
            || prefix_cache_default(engine.kv_bytes(), memory_available()),
            |mb| mb << 20,
        ) as usize,
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
        deterministic: engine.deterministic(),
        ..StatusReport::default()
    };
    tracing::info!(
        model = %loaded.info.name, slots = settings.slots, n_ctx = kv_cells, n_ctx_seq,
        policy = settings.policy.as_str(), threads = settings.threads_for(&loaded.device),
        backend = %loaded.device.backend, device = %loaded.device.name,
        gpu_layers = loaded.device.gpu_layers, device_sampling = engine.device_sampling(),
        deterministic = engine.deterministic(),
        "engine ready"
    );
    let _ = ready.send(Ok(loaded.info.clone()));
    let mut router = Router::new(engine, scheduler, status);
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| router.serve(&rx)));
    if served.is_err() {
        // Every request would wait forever on a dead engine: better that the service
        // manager sees the daemon fail and restarts it (the panic message is above).
        tracing::error!("the engine thread panicked; exiting");
        std::process::exit(70); // EX_SOFTWARE
    }
}
