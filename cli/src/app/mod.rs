//! The `batchctl` command: argument parsing, the subcommands, exit codes.
//!
//! Everything runs in-process through [`main_with`], so tests can drive the command
//! without spawning the binary. Each subcommand lives in a module of its own, with a
//! variant in [`args::Command`] and an arm in [`run`].

pub mod args;
pub mod bench;
pub mod completions;
pub mod exit;
pub mod generate;
mod interrupt;
pub mod json;
pub mod man;
pub mod prompts;
pub mod status;
pub mod trace;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::Parser;

pub use args::Cli;
pub use exit::{
    exit_code, Exit, RequestsFailed, EXIT_BROKEN_PIPE, EXIT_DATAERR, EXIT_FAILURE,
    EXIT_INTERRUPTED, EXIT_NOPERM, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, EXIT_USAGE,
};
pub use interrupt::{Interrupt, InterruptTrigger};

use crate::{Client, ClientError};

/// Connects to the daemon at `socket`.
pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
    Client::connect(socket).await
}

/// Runs a parsed command line, writing results to `out`.
pub async fn run(
    cli: &Cli,
    out: &mut (dyn Write + Send),
    interrupt: &Interrupt,
) -> anyhow::Result<Exit> {
    let socket = cli.socket_path();
    match &cli.command {
        args::Command::Generate(a) => generate::run(a, &socket, out, interrupt).await,
        args::Command::Status(a) => status::run(a, &socket, out, interrupt).await,
        args::Command::Bench(a) => bench::run(a, &socket, out, interrupt).await,
        args::Command::Trace(a) => trace::run(a, &socket, out, interrupt).await,
        args::Command::Completions(a) => completions::run(a, out),
        args::Command::Man(a) => man::run(a, out),
    }
}

/// The one-line message for an error returned by [`run`] (`None` when there is nothing
/// worth saying, e.g. stdout was closed).
pub fn error_line(err: &anyhow::Error) -> Option<String> {
    if exit::is_broken_pipe(err) {
        return None;
    }
    let msg = err.to_string().replace(['\r', '\n'], " ");
    Some(format!("batchctl: {msg}"))
}

/// Runs `batchctl` with `args` (the first is the program name) as the binary would,
/// writing results to `out` and diagnostics to `err`; returns the exit status.
pub async fn main_with<I, T>(
    args: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    interrupt: &Interrupt,
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = if e.use_stderr() {
                write!(err, "{}", e.render())
            } else {
                write!(out, "{}", e.render())
            };
            return u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE);
        }
    };
    match run(&cli, out, interrupt).await {
        Ok(exit) => exit.code(),
        Err(e) => {
            if let Some(line) = error_line(&e) {
                let _ = writeln!(err, "{line}");
            }
            exit_code(&e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io;

    #[test]
    fn exit_codes() {
        let connect = anyhow::Error::new(ClientError::Connect {
            path: "/nope.sock".into(),
            source: io::Error::from_raw_os_error(111),
        });
        assert_eq!(exit_code(&connect), EXIT_UNAVAILABLE);
        let line = error_line(&connect).unwrap();
        assert!(
            line.starts_with("batchctl: cannot reach batchd at /nope.sock: "),
            "{line}"
        );
        let other = anyhow::anyhow!("two\nlines");
        assert_eq!(exit_code(&other), EXIT_FAILURE);
        assert_eq!(error_line(&other).unwrap(), "batchctl: two lines");
        let pipe = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(exit_code(&pipe), EXIT_BROKEN_PIPE);
        assert_eq!(error_line(&pipe), None);
    }
}
