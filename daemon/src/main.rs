//! `batchd`: serve a GGUF model to local clients over a Unix socket, batching every
//! client's requests together.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use batchd::access::Access;
use batchd::config::{self, ServeOptions};
use batchd::engine;
use batchd::modelgen::{write_model, Shape};
use batchd::{demo, http, server, signals};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "batchd",
    version,
    about = "Local LLM inference daemon with continuous batching",
    after_help = SETTINGS_HELP
)]
struct Cli {
    #[command(flatten)]
    serve: ServeOptions,
    /// Config file [default: batchd.toml in the user config dir].
    #[arg(long, global = true, env = "BATCHD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Where settings come from, for `--help`.
const SETTINGS_HELP: &str = "\
Every flag can also be set by an environment variable, BATCHD_ and the flag's name in
capitals (--slots: BATCHD_SLOTS, --prefill-chunk: BATCHD_PREFILL_CHUNK; shown with each
flag). A flag wins over its variable, and both win over the config file.";

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
        /// Also time steps of the B decodes plus one more sequence's prompt chunk of each
        /// of these sizes (continuous batching's mixed steps).
        #[arg(long, value_delimiter = ',')]
        mixed: Vec<u32>,
        /// Instead, time the ways of reusing a computed prefix of each of these lengths:
        /// computing it, saving and restoring a snapshot, moving a KV stream.
        #[arg(long, value_delimiter = ',', value_name = "L")]
        kv_copy: Vec<u32>,
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script, e.g. `batchd completions bash >
    /// ~/.local/share/bash-completion/completions/batchd`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print batchd's man page, or write one per command into a directory, e.g. `batchd
    /// man --dir ~/.local/share/man/man1`.
    Man {
        /// Write batchd.1 and a page per subcommand into DIR instead of printing batchd.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli: Cli = batchd::env_args::parse_from(std::env::args_os().collect());
    init_tracing();
    let result = match cli.command {
        Some(Cmd::MakeModel { shape, out }) => write_model(shape, &out).map(|()| {
            println!(
                "wrote {} ({shape:?} shape, synthetic weights)",
                out.display()
            );
        }),
        Some(Cmd::BenchEngine { kv_copy, json, .. }) if !kv_copy.is_empty() => {
            bench_kv(cli.serve, cli.config, &kv_copy, json)
        }
        Some(Cmd::BenchEngine {
            batches,
            tokens,
            prompt_tokens,
            mixed,
            kv_copy: _,
            json,
        }) => bench_engine(
            cli.serve,
            cli.config,
            &batches,
            (prompt_tokens, tokens, &mixed),
            json,
        ),
        Some(Cmd::Completions { shell }) => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "batchd", &mut script);
            std::io::Write::write_all(&mut std::io::stdout(), &script).map_err(Into::into)
        }
        Some(Cmd::Man { dir }) => man(dir),
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

/// Prints batchd.1, or writes every page into `dir`.
fn man(dir: Option<PathBuf>) -> anyhow::Result<()> {
    match dir {
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
            .with_context(|| format!("writing man pages into {}", dir.display())),
        None => Ok(clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?),
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

/// Prints `points` as one JSON array, or as `table` renders them.
fn print_points<T: serde::Serialize>(
    points: &[T],
    json: bool,
    table: fn(&[T]) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(points)?);
    } else {
        print!("{}", table(points));
    }
    Ok(())
}

fn bench_engine(
    flags: ServeOptions,
    config_file: Option<PathBuf>,
    batches: &[u32],
    (prompt_tokens, tokens, mixed): (u32, u32, &[u32]),
    json: bool,
) -> anyhow::Result<()> {
    let cfg = config::resolve(flags, config_file.as_deref(), demo::ensure_demo_model)?;
    let points = batchd::bench_engine::run(cfg.engine, batches, prompt_tokens, tokens, mixed)?;
    print_points(&points, json, batchd::bench_engine::table)
}

fn bench_kv(
    flags: ServeOptions,
    config_file: Option<PathBuf>,
    lens: &[u32],
    json: bool,
) -> anyhow::Result<()> {
    let cfg = config::resolve(flags, config_file.as_deref(), demo::ensure_demo_model)?;
    let points = batchd::bench_kv::run(cfg.engine, lens)?;
    print_points(&points, json, batchd::bench_kv::table)
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
    batchd::notify::loading(&cfg.engine.model);
    let http_where = http.describe();
    // The HTTP API hears of the shutdown too: from then on /health answers 503.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    runtime.block_on(async {
        // Serving from now on, while the model loads (/health says so; the API's requests
        // wait for it), until the runtime ends after the drain.
        let api = http::start(http, access.clone(), cfg.max_frame, stop_rx);
        let settings = cfg.engine.clone();
        let engine = tokio::task::spawn_blocking(move || engine::spawn(settings))
            .await
            .context("the engine thread's launcher panicked")??;
        // Before "listening", READY=1 and the main socket's first answer: whoever saw any
        // of them finds the HTTP API serving too.
        api.ready(engine.sender(), engine.model.clone()).await;
        // Installed before "listening" is printed: whoever waits for that line may signal.
        let shutdown = signals::shutdown().context("installing signal handlers")?;
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
        if let Some(http_where) = http_where {
            eprintln!("batchd: OpenAI-compatible HTTP API on {http_where}");
        }
        let server = server::ServerConfig {
            access,
            max_frame: cfg.max_frame,
            drain_timeout: cfg.drain_timeout,
        };
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        batchd::notify::ready(cfg.engine.slots, &where_);
        server::run(&listener, engine, server, shutdown).await;
        anyhow::Ok(())
    })?;
    drop(listener); // removes the socket file
    Ok(())
}
