//! The `batchctl` command: argument parsing, the subcommands, exit codes.
//!
//! Everything runs in-process through [`main_with`], so tests can drive the command
//! without spawning the binary. Each subcommand lives in a module of its own, with a
//! variant in [`args::Command`] and an arm in [`run`].

pub mod args;
pub mod bench;
pub mod generate;
mod interrupt;
pub mod json;
pub mod prompts;
pub mod status;
pub mod trace;

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;

use clap::Parser;

pub use args::Cli;
pub use interrupt::{Interrupt, InterruptTrigger};

use crate::{Client, ClientError};

/// Exit status after an error other than the ones below.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status when the daemon cannot be reached (or refused the connection).
pub const EXIT_CANNOT_CONNECT: u8 = 2;
/// Exit status after Ctrl-C.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout was closed under us (as if killed by SIGPIPE).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// How a command ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It did its job.
    Success,
    /// Ctrl-C stopped it (requests were cancelled).
    Interrupted,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Interrupted => EXIT_INTERRUPTED,
        }
    }
}

/// A failure to set up the connection (connect or handshake): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CannotConnect(pub ClientError);

/// Connects, marking failures as [`CannotConnect`].
pub async fn connect(socket: &Path) -> Result<Client, CannotConnect> {
    Client::connect(socket).await.map_err(CannotConnect)
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
    }
}

/// The exit status for an error returned by [`run`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<CannotConnect>().is_some() {
        EXIT_CANNOT_CONNECT
    } else if is_broken_pipe(err) {
        EXIT_BROKEN_PIPE
    } else {
        EXIT_FAILURE
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// The one-line message for an error returned by [`run`] (`None` when there is nothing
/// worth saying, e.g. stdout was closed).
pub fn error_line(err: &anyhow::Error) -> Option<String> {
    if is_broken_pipe(err) {
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
            return u8::try_from(e.exit_code()).unwrap_or(EXIT_FAILURE);
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

    #[test]
    fn exit_codes() {
        let connect = anyhow::Error::new(CannotConnect(ClientError::Connect {
            path: "/nope.sock".into(),
            source: io::Error::from_raw_os_error(111),
        }));
        assert_eq!(exit_code(&connect), EXIT_CANNOT_CONNECT);
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
