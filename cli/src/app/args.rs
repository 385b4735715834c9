//! Command-line arguments.

use std::path::PathBuf;

use batchd_protocol::{GenerateRequest, Sampling};
use clap::{Args, Parser, Subcommand};

/// Command-line client for batchd, the local LLM inference daemon.
#[derive(Debug, Parser)]
#[command(name = "batchctl", version, about, after_help = super::exit::EXIT_HELP)]
pub struct Cli {
    /// Socket of the daemon [default: $BATCHD_SOCKET, else
    /// $XDG_RUNTIME_DIR/batchd/batchd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The socket to use: `--socket`, else `$BATCHD_SOCKET`, else the user's daemon or the
    /// system service, whichever exists (see `client_socket_path`).
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(batchd_protocol::client_socket_path)
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text from one or more prompts (several are submitted at once and batch).
    Generate(GenerateArgs),
    /// Show what the daemon is doing.
    Status(StatusArgs),
    /// Measure a running daemon: throughput and latencies of a workload.
    Bench(BenchArgs),
    /// Show what each engine step batches (and its attention mask).
    Trace(TraceArgs),
    /// Print a shell completion script.
    #[command(after_help = super::completions::INSTALL_HELP)]
    Completions(CompletionsArgs),
    /// Print batchctl's man page, or write one per command into a directory.
    #[command(after_help = super::man::INSTALL_HELP)]
    Man(ManArgs),
}

/// Arguments of `batchctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `batchctl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write batchctl.1 and a page per subcommand (batchctl-generate.1, ...) into DIR
    /// instead of printing batchctl.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Arguments of `batchctl generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Prompts; each is one request. A lone `-` reads one prompt per non-empty line from
    /// stdin.
    #[arg(value_name = "PROMPT", conflicts_with = "file")]
    pub prompts: Vec<String>,

    /// Read one prompt per non-empty line from F (`-` for stdin).
    #[arg(long, short = 'f', value_name = "F")]
    pub file: Option<PathBuf>,

    /// Most tokens to generate per prompt.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 128)]
    pub max_tokens: u32,

    /// Sampling temperature; 0 is greedy.
    #[arg(long, value_name = "T", default_value_t = 0.0)]
    pub temperature: f32,

    /// Keep only the K most likely tokens; 0 disables.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub top_k: u32,

    /// Keep the most likely tokens up to cumulative probability P; 1 disables.
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub top_p: f32,

    /// Drop tokens less likely than P times the most likely one; 0 disables.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub min_p: f32,

    /// Penalty for repeating recent tokens; 1 disables.
    #[arg(long, value_name = "R", default_value_t = 1.0)]
    pub repeat_penalty: f32,

    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub repeat_last_n: u32,

    /// Seed of the random choice.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u32,

    /// Stop before this string (repeatable).
    #[arg(long, value_name = "STR")]
    pub stop: Vec<String>,

    /// Keep generating past end-of-text tokens.
    #[arg(long)]
    pub ignore_eos: bool,

    /// Report each token's log-probability and its N most likely alternatives (0 to 20;
    /// printed with --json).
    #[arg(long, value_name = "N")]
    pub logprobs: Option<u8>,

    /// Print one JSON object per request, one per line, in input order.
    #[arg(long)]
    pub json: bool,
}

impl GenerateArgs {
    /// The request these flags describe, for `prompt`.
    pub fn request(&self, prompt: String, stream: bool) -> GenerateRequest {
        GenerateRequest {
            prompt,
            max_tokens: self.max_tokens,
            sampling: Sampling {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                seed: self.seed,
            },
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            stream,
            logprobs: self.logprobs,
        }
    }
}

/// Arguments of `batchctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The workloads of `batchctl bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// The seed's six prompts with fixed lengths (611 tokens), all submitted at once;
    /// meant for `batchd --slots 3`.
    Seed,
    /// Closed loop: C clients, each sending its next request when its last finished.
    Uniform,
    /// S decoding streams, then one long prompt: how much it stalls the streams.
    LongPrompt,
    /// The uniform closed loop where every prompt is one long shared prefix (a system
    /// prompt, a few-shot template) and a distinct question.
    SharedPrefix,
}

impl Workload {
    /// The name on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Seed => "seed",
            Workload::Uniform => "uniform",
            Workload::LongPrompt => "long-prompt",
            Workload::SharedPrefix => "shared-prefix",
        }
    }
}

/// Arguments of `batchctl bench`.
#[derive(Debug, Args)]
#[command(after_help = super::bench::JSON_HELP)]
pub struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, value_name = "NAME")]
    pub workload: Workload,

    /// uniform: concurrent clients, one connection each [default: 4; shared-prefix: 16].
    #[arg(long, value_name = "C", value_parser = clap::value_parser!(u32).range(1..))]
    pub clients: Option<u32>,

    /// uniform, shared-prefix: requests in total [default: 32].
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u32).range(1..))]
    pub requests: Option<u32>,

    /// uniform: tokens per request [default: 64]; shared-prefix: [default: 32];
    /// long-prompt: tokens per stream [default: 256].
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,

    /// uniform: the same prompt for every request [default: a distinct prompt of
    /// about --prompt-tokens tokens for each request].
    #[arg(long, value_name = "TEXT", conflicts_with = "prompt_tokens")]
    pub prompt: Option<String>,

    /// long-prompt: decoding streams [default: 4].
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: Option<u32>,

    /// uniform: tokens of each request's prompt, about [default: 16]; shared-prefix: of
    /// the shared prefix [default: 500]; long-prompt: of the long prompt [default: 900].
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u32).range(1..))]
    pub prompt_tokens: Option<u32>,

    /// Write the prompts the run would send to F, one JSON string a line (the format of
    /// the llama-server load scripts), and exit without running.
    #[arg(long, value_name = "F")]
    pub prompts_out: Option<PathBuf>,

    /// Print one JSON object (keys below).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `batchctl trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Stop after N steps [default: until Ctrl-C].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: Option<u64>,

    /// Also draw each step's attention mask (steps of at most 64 tokens).
    #[arg(long)]
    pub mask: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap()
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_greedy_128() {
        let cli = parse(&["batchctl", "generate", "hi"]);
        let Command::Generate(g) = cli.command else {
            panic!()
        };
        let req = g.request("hi".into(), true);
        assert_eq!(req, GenerateRequest::new("hi"));
        assert!(req.sampling.is_greedy());
    }

    #[test]
    fn flags_reach_the_request() {
        let cli = parse(&[
            "batchctl",
            "generate",
            "a",
            "b",
            "--max-tokens",
            "7",
            "--temperature",
            "0.5",
            "--top-k",
            "40",
            "--top-p",
            "0.9",
            "--min-p",
            "0.05",
            "--repeat-penalty",
            "1.1",
            "--seed",
            "42",
            "--stop",
            "\n",
            "--stop",
            "END",
            "--ignore-eos",
            "--json",
        ]);
        let Command::Generate(g) = cli.command else {
            panic!()
        };
        assert_eq!(g.prompts, ["a", "b"]);
        assert!(g.json);
        let r = g.request("a".into(), false);
        assert_eq!(r.max_tokens, 7);
        assert_eq!(r.sampling.temperature, 0.5);
        assert_eq!(r.sampling.top_k, 40);
        assert_eq!(r.sampling.top_p, 0.9);
        assert_eq!(r.sampling.min_p, 0.05);
        assert_eq!(r.sampling.repeat_penalty, 1.1);
        assert_eq!(r.sampling.seed, 42);
        assert_eq!(r.stop, ["\n", "END"]);
        assert!(r.ignore_eos);
        assert!(!r.stream);
    }

    #[test]
    fn socket_flag_wins_and_is_global() {
        let cli = parse(&["batchctl", "status", "--socket", "/tmp/x.sock"]);
        assert_eq!(cli.socket_path(), PathBuf::from("/tmp/x.sock"));
        let cli = parse(&["batchctl", "--socket", "/tmp/y.sock", "status", "--json"]);
        assert_eq!(cli.socket_path(), PathBuf::from("/tmp/y.sock"));
    }

    #[test]
    fn bench_and_trace_flags() {
        let cli = parse(&[
            "batchctl",
            "bench",
            "--workload",
            "long-prompt",
            "--streams",
            "2",
            "--prompt-tokens",
            "100",
            "--json",
        ]);
        let Command::Bench(b) = cli.command else {
            panic!()
        };
        assert_eq!(b.workload, Workload::LongPrompt);
        assert_eq!(
            (b.streams, b.prompt_tokens, b.json),
            (Some(2), Some(100), true)
        );
        assert!(Cli::try_parse_from(["batchctl", "bench"]).is_err());
        assert!(Cli::try_parse_from(["batchctl", "bench", "--workload", "x"]).is_err());
        let zero = [
            "batchctl",
            "bench",
            "--workload",
            "uniform",
            "--clients",
            "0",
        ];
        assert!(Cli::try_parse_from(zero).is_err());

        let cli = parse(&["batchctl", "trace", "--steps", "3", "--mask"]);
        let Command::Trace(t) = cli.command else {
            panic!()
        };
        assert_eq!((t.steps, t.mask), (Some(3), true));
        assert!(Cli::try_parse_from(["batchctl", "trace", "--steps", "0"]).is_err());
    }

    #[test]
    fn file_conflicts_with_prompts() {
        assert!(Cli::try_parse_from(["batchctl", "generate", "a", "--file", "f"]).is_err());
        let cli = parse(&["batchctl", "generate", "-"]);
        let Command::Generate(g) = cli.command else {
            panic!()
        };
        assert_eq!(g.prompts, ["-"]);
    }
}
