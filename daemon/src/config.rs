//! Command-line flags and the TOML config file, resolved into settings (flags win).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::policy::{Policy, PrefillChunk};
use crate::settings::{EngineSettings, Switch};

/// Flags shared by `batchd` (serve) and the config file; every one is optional.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServeOptions {
    /// GGUF model to serve [default: the built-in synthetic demo model].
    #[arg(long, global = true, env = "BATCHD_MODEL")]
    pub model: Option<PathBuf>,
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/batchd/batchd.sock].
    #[arg(long, global = true, env = "BATCHD_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Sequences decoded together [default: 16].
    #[arg(long, global = true, env = "BATCHD_SLOTS")]
    pub slots: Option<u32>,
    /// KV cache size in tokens, shared by all slots [default: slots × the model's context].
    #[arg(long, global = true, env = "BATCHD_CTX")]
    pub ctx: Option<u32>,
    /// Most tokens in one llama.cpp decode [default: 2048].
    #[arg(long, global = true, env = "BATCHD_BATCH")]
    pub batch: Option<u32>,
    /// Tokens per compute chunk inside a decode [default: 512].
    #[arg(long, global = true, env = "BATCHD_UBATCH")]
    pub ubatch: Option<u32>,
    /// Most tokens per step: decodes first, then prompt chunks [default: --batch].
    #[arg(long, global = true, env = "BATCHD_STEP_BUDGET")]
    pub step_budget: Option<u32>,
    /// Most prompt tokens per step while others decode: a number, or `auto` to size
    /// chunks from measured step times [default: auto].
    #[arg(long, global = true, env = "BATCHD_PREFILL_CHUNK", value_parser = checked(parse_prefill_chunk))]
    pub prefill_chunk: Option<String>,
    /// With `--prefill-chunk auto`: a step carrying prompt tokens may take up to this
    /// many times a decode-only step of every busy slot, which bounds how much running
    /// streams slow down while a prompt is prefilled [default: 3; 8 when every layer runs
    /// on a GPU].
    #[arg(long, global = true, value_name = "X", env = "BATCHD_PREFILL_PACE")]
    pub prefill_pace: Option<f64>,
    /// Memory for saved prompt prefixes that later requests reuse instead of computing
    /// again, in MiB; 0 turns the prefix cache off [default: the KV cache's size, at most a
    /// quarter of the memory available at start].
    #[arg(
        long,
        global = true,
        value_name = "MIB",
        env = "BATCHD_PREFIX_CACHE_MB"
    )]
    pub prefix_cache_mb: Option<u64>,
    /// CPU threads [default: all cores, or 1 when every layer runs on a GPU].
    #[arg(long, global = true, env = "BATCHD_THREADS")]
    pub threads: Option<u32>,
    /// Scheduling policy [default: continuous].
    #[arg(long, value_enum, global = true, env = "BATCHD_POLICY")]
    pub policy: Option<Policy>,
    /// Requests that may wait for a slot before new ones get `busy` [default: 1024].
    #[arg(long, global = true, env = "BATCHD_QUEUE")]
    pub queue: Option<u32>,
    /// Flash attention [default: auto: llama.cpp turns it on where the backend supports
    /// it, CPU and CUDA included]; --deterministic needs it on or auto.
    #[arg(long, value_enum, global = true, env = "BATCHD_FLASH_ATTN")]
    pub flash_attn: Option<Switch>,
    /// One KV buffer for all sequences instead of one stream per sequence.
    #[arg(long, global = true, env = "BATCHD_KV_UNIFIED")]
    pub kv_unified: Option<bool>,
    /// Model layers offloaded to the GPU on GPU builds [default: all].
    #[arg(long, global = true, env = "BATCHD_GPU_LAYERS")]
    pub gpu_layers: Option<u32>,
    /// Pick greedy tokens on the compute device, so only token ids leave it instead of
    /// full-vocabulary logits [default: auto, which is off: the host's argmax measured
    /// faster with many sequences, this with few; see bench/README.md].
    #[arg(long, value_enum, global = true, env = "BATCHD_DEVICE_SAMPLING")]
    pub device_sampling: Option<Switch>,
    /// Greedy output that does not depend on what a request is packed with, on every CPU
    /// tier, at a cost (see the README and bench/README.md); CPU only.
    #[arg(long, global = true, env = "BATCHD_DETERMINISTIC", num_args = 0..=1, default_missing_value = "true")]
    pub deterministic: Option<bool>,
    /// Run each kind of step once at start, so the first requests do not pay for loading
    /// GPU kernels [default: auto, which is off for now; see bench/README.md].
    #[arg(long, value_enum, global = true, env = "BATCHD_WARMUP")]
    pub warmup: Option<Switch>,
    /// Largest frame accepted from a client, in bytes [default: 1048576].
    #[arg(long, global = true, env = "BATCHD_MAX_FRAME")]
    pub max_frame: Option<u32>,
    /// Seconds running requests may take to finish after SIGTERM [default: 30].
    #[arg(long, global = true, env = "BATCHD_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    /// Mode of a socket batchd binds itself, in octal [default: 0600].
    #[arg(long, global = true, env = "BATCHD_SOCKET_MODE", value_parser = checked(parse_socket_mode))]
    pub socket_mode: Option<String>,
    /// Other uids allowed to connect (the daemon's own uid and root always are).
    #[arg(long, global = true, value_delimiter = ',', env = "BATCHD_ALLOW_UIDS")]
    pub allow_uids: Option<Vec<u32>>,
    /// A group whose members may connect.
    #[arg(long, global = true, env = "BATCHD_ALLOW_GROUP")]
    pub allow_group: Option<String>,
    /// Unix socket of the OpenAI-compatible HTTP API, or `none` [default: http.sock beside
    /// batchd.sock; NAME.http.sock beside another NAME.sock].
    #[arg(long, global = true)]
    pub http_socket: Option<String>,
    /// Also serve the HTTP API on this TCP address (e.g. 127.0.0.1:8080); needs --api-key.
    #[arg(long, global = true)]
    pub http_listen: Option<std::net::SocketAddr>,
    /// Bearer token the TCP listener requires (the Unix sockets check peer credentials).
    #[arg(long, global = true, env = "BATCHD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

impl ServeOptions {
    /// Fills every unset field from `other`.
    pub fn or(self, other: ServeOptions) -> ServeOptions {
        macro_rules! pick {
            ($($f:ident),*) => { ServeOptions { $($f: self.$f.or(other.$f)),* } };
        }
        pick!(
            model,
            socket,
            slots,
            ctx,
            batch,
            ubatch,
            step_budget,
            prefill_chunk,
            prefill_pace,
            prefix_cache_mb,
            threads,
            policy,
            queue,
            flash_attn,
            kv_unified,
            gpu_layers,
            device_sampling,
            deterministic,
            warmup,
            max_frame,
            drain_timeout,
            socket_mode,
            allow_uids,
            allow_group,
            http_socket,
            http_listen,
            api_key
        )
    }
}

/// Everything `batchd` needs to serve.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub engine: EngineSettings,
    pub socket: PathBuf,
    pub max_frame: u32,
    pub drain_timeout: std::time::Duration,
    /// True when no model was named and the built-in demo model is served.
    pub demo_model: bool,
    /// Mode of a socket batchd binds itself.
    pub socket_mode: u32,
    pub allow_uids: Vec<u32>,
    pub allow_group: Option<String>,
    /// Where the HTTP API listens.
    pub http: crate::http::HttpConfig,
}

/// The per-user config file: `batchd.toml` in the `directories` config dir.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "batchd").map(|d| d.config_dir().join("batchd.toml"))
}

/// Where the built-in demo model is written.
pub fn data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "batchd")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("batchd-data"))
}

/// Reads a config file. A missing file is fine unless it was named explicitly.
pub fn read_file(path: &Path, explicit: bool) -> anyhow::Result<ServeOptions> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("reading config file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(ServeOptions::default())
        }
        Err(e) => Err(e).with_context(|| format!("reading config file {}", path.display())),
    }
}

/// Merges flags over the file over defaults.
pub fn resolve(
    flags: ServeOptions,
    config_file: Option<&Path>,
    demo_model: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<ServeConfig> {
    let file = match config_file {
        Some(p) => read_file(p, true)?,
        None => match default_config_path() {
            Some(p) => read_file(&p, false)?,
            None => ServeOptions::default(),
        },
    };
    let o = flags.or(file);
    let demo = o.model.is_none();
    let model = match o.model {
        Some(m) => m,
        None => demo_model()?,
    };
    let mut e = EngineSettings::new(model);
    e.slots = o.slots.unwrap_or(e.slots);
    e.n_ctx = o.ctx.or(e.n_ctx);
    e.n_batch = o.batch.unwrap_or(e.n_batch);
    e.n_ubatch = o.ubatch.unwrap_or(e.n_ubatch.min(e.n_batch));
    e.step_budget = o.step_budget;
    e.prefill_chunk = match o.prefill_chunk.as_deref() {
        None => PrefillChunk::Auto,
        Some(v) => parse_prefill_chunk(v).map_err(anyhow::Error::msg)?,
    };
    e.prefill_pace = o.prefill_pace.or(e.prefill_pace);
    e.prefix_cache_mb = o.prefix_cache_mb.or(e.prefix_cache_mb);
    e.threads = o.threads.or(e.threads);
    e.policy = o.policy.unwrap_or(e.policy);
    e.queue_capacity = o.queue.unwrap_or(e.queue_capacity);
    e.flash_attention = o.flash_attn.unwrap_or(e.flash_attention);
    e.kv_unified = o.kv_unified.unwrap_or(e.kv_unified);
    e.gpu_layers = o.gpu_layers.unwrap_or(e.gpu_layers);
    e.device_sampling = o.device_sampling.unwrap_or(e.device_sampling);
    e.deterministic = o.deterministic.unwrap_or(e.deterministic);
    e.warmup = o.warmup.unwrap_or(e.warmup);
    e.validate().map_err(anyhow::Error::msg)?;
    let socket = o
        .socket
        .unwrap_or_else(batchd_protocol::default_socket_path);
    let http = crate::http::HttpConfig::resolve(
        &socket,
        o.http_socket.as_deref(),
        o.http_listen,
        o.api_key,
    )?;
    Ok(ServeConfig {
        engine: e,
        socket,
        max_frame: o
            .max_frame
            .unwrap_or(batchd_protocol::DEFAULT_MAX_FRAME_BYTES),
        drain_timeout: std::time::Duration::from_secs(o.drain_timeout.unwrap_or(30)),
        demo_model: demo,
        socket_mode: match o.socket_mode.as_deref() {
            Some(m) => parse_socket_mode(m).map_err(anyhow::Error::msg)?,
            None => 0o600,
        },
        allow_uids: o.allow_uids.unwrap_or_default(),
        allow_group: o.allow_group,
        http,
    })
}

/// `auto` or a positive number of tokens.
pub fn parse_prefill_chunk(v: &str) -> Result<PrefillChunk, String> {
    match v {
        "auto" => Ok(PrefillChunk::Auto),
        n => n
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .map(PrefillChunk::Fixed)
            .ok_or_else(|| {
                format!("prefill_chunk must be `auto` or a positive number (got {v:?})")
            }),
    }
}

/// An octal file mode such as `0660`.
pub fn parse_socket_mode(v: &str) -> Result<u32, String> {
    u32::from_str_radix(v.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("socket_mode {v:?} is not an octal mode like 0660"))
}

/// A clap value parser that checks a string with `parse` but keeps the string, so a
/// bad flag or `BATCHD_*` value is refused while parsing, where clap names it.
fn checked<T: 'static>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |v| parse(v).map(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("batchd-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("batchd.toml");
        std::fs::write(
            &file,
            "slots = 4\npolicy = \"static\"\nbatch = 256\nmodel = \"/m.gguf\"\n",
        )
        .unwrap();
        let flags = ServeOptions {
            slots: Some(8),
            ..ServeOptions::default()
        };
        let c = resolve(flags, Some(&file), || unreachable!()).unwrap();
        assert_eq!(c.engine.slots, 8);
        assert_eq!(c.engine.policy, Policy::Static);
        assert_eq!(c.engine.n_batch, 256);
        assert_eq!(c.engine.step_budget, None);
        assert_eq!(c.engine.model, PathBuf::from("/m.gguf"));
        assert!(!c.demo_model);
        std::fs::write(&file, "slotz = 4\n").unwrap();
        let err = resolve(ServeOptions::default(), Some(&file), || unreachable!()).unwrap_err();
        assert!(format!("{err:#}").contains("slotz"), "{err:#}");
        assert!(resolve(
            ServeOptions::default(),
            Some(&dir.join("missing.toml")),
            || { unreachable!() }
        )
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
