//! `batchd`: serve a GGUF model to local clients over a Unix socket, batching every
//! client's requests together.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use batchd::access::Access;
use batchd::config::{self, ServeOptions};
use batchd::engine::{self, Command};
use batchd::modelgen::{write_model, Shape};
use batchd::{demo, http, server};
use clap::{Parser, Subcommand};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "batchd",
    version,
    about = "Local LLM inference daemon with continuous batching"
)]
struct Cli {
    #[command(flatten)]
    serve: ServeOptions,
    /// Config file [default: batchd.toml in the user config dir].
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a GPT-2-architecture GGUF with the real GPT-2 vocabulary and deterministic
    /// synthetic (meaningless) weights.
    MakeModel {
        /// `tiny` (for tests) or `small` (GPT-2-small shape, f16, for benchmarks).
        #[arg(long, value_enum, default_value = "tiny")]
        shape: Shape,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure raw batched decode on this engine (no socket, protocol or scheduler): B
    /// sequences prefilled then decoded together, tokens/s for each B. Takes the same
    /// engine flags as serving (--model, --threads, --flash-attn, ...).
    BenchEngine {
        /// Batch sizes (sequences decoded together) to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,4,8,16,32")]
        batches: Vec<u32>,
        /// Tokens generated per sequence.
        #[arg(long, default_value_t = 64)]
        tokens: u32,
        /// Prompt tokens per sequence.
        #[arg(long, default_value_t = 16)]
        prompt_tokens: u32,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Some(Cmd::MakeModel { shape, out }) => write_model(shape, &out).map(|()| {
            println!(
                "wrote {} ({shape:?} shape, synthetic weights)",
                out.display()
            );
        }),
        Some(Cmd::BenchEngine {
            batches,
            tokens,
            prompt_tokens,
            json,
        }) => bench_engine(cli.serve, cli.config, &batches, prompt_tokens, tokens, json),
        None => serve(cli.serve, cli.config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("batchd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Span-close events carry each step phase's time when RUST_LOG asks for trace level.
    tracing_subscriber::fmt()
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn bench_engine(
    flags: ServeOptions,
    config_file: Option<PathBuf>,
    batches: &[u32],
    prompt_tokens: u32,
    tokens: u32,
    json: bool,
) -> anyhow::Result<()> {
    let cfg = config::resolve(flags, config_file.as_deref(), demo::ensure_demo_model)?;
    let points = batchd::bench_engine::run(cfg.engine, batches, prompt_tokens, tokens)?;
    if json {
        println!("{}", serde_json::to_string(&points)?);
    } else {
        print!("{}", batchd::bench_engine::table(&points));
    }
    Ok(())
}

fn serve(flags: ServeOptions, config_file: Option<PathBuf>) -> anyhow::Result<()> {
    let cfg = config::resolve(flags, config_file.as_deref(), demo::ensure_demo_model)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let access = Arc::new(Access::new(&cfg.allow_uids, cfg.allow_group.as_deref())?);
    let (listener, where_, http) = {
        let _guard = runtime.enter();
        let (listener, where_, inherited_http) = match server::inherited()? {
            Some(i) => (i.main, "the socket systemd passed in".to_string(), i.http),
            None => (
                server::bind(&cfg.socket, cfg.socket_mode)?,
                cfg.socket.display().to_string(),
                None,
            ),
        };
        let http = http::Listeners::bind(&cfg.http, cfg.socket_mode, inherited_http)?;
        (listener, where_, http)
    };
    let engine = engine::spawn(cfg.engine.clone())?;
    if engine.model.synthetic {
        eprintln!(
            "batchd: serving {} — {}",
            engine.model.name, engine.model.note
        );
    }
    eprintln!(
        "batchd: listening on {} ({} slots, {} policy)",
        where_,
        cfg.engine.slots,
        cfg.engine.policy.as_str()
    );
    if let Some(http_where) = http.describe() {
        eprintln!("batchd: OpenAI-compatible HTTP API on {http_where}");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let signals = watch_signals(stop_tx)?;
    let commands = engine.sender();
    runtime.block_on(async {
        // Ends with the runtime, after the drain: meanwhile /health answers 503.
        tokio::spawn(http::serve(
            http,
            engine.sender(),
            engine.model.clone(),
            access.clone(),
            cfg.max_frame,
            stop_rx.clone(),
        ));
        let accept = server::accept_loop(
            &listener,
            engine.sender(),
            access,
            cfg.max_frame,
            stop_rx.clone(),
        );
        tokio::pin!(accept);
        let mut stop = stop_rx.clone();
        // The accept loop also ends on the stop signal: remember if it already did.
        let accept_ended = tokio::select! {
            _ = &mut accept => true,
            _ = stop.wait_for(|s| *s) => false,
        };
        tracing::info!("shutting down: no new requests; draining");
        eprintln!("batchd: shutting down");
        let _ = commands.send(Command::Close);
        let join = tokio::task::spawn_blocking(move || engine.join());
        tokio::pin!(join);
        if tokio::time::timeout(cfg.drain_timeout, &mut join)
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed: cancelling running requests");
            let _ = commands.send(Command::CancelAll);
            let _ = join.await;
        }
        if !accept_ended {
            // Give connections a moment to flush their last frames.
            let _ = tokio::time::timeout(Duration::from_secs(2), accept).await;
        }
    });
    drop(signals);
    drop(listener); // removes the socket file
    Ok(())
}

/// SIGTERM/SIGINT set `stop`; a second signal exits at once.
fn watch_signals(stop: watch::Sender<bool>) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("batchd-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen > 1 {
                    eprintln!("batchd: second signal ({signal}), exiting now");
                    std::process::exit(1);
                }
                let _ = stop.send(true);
            }
        })?;
    Ok(handle)
}
