//! `batchctl completions`: shell completion scripts generated from the argument parser,
//! so they never fall behind the flags.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use super::args::{Cli, CompletionsArgs};
use super::Exit;

/// Where the scripts go, shown under `batchctl completions --help`.
pub const INSTALL_HELP: &str = "\
Install (then start a new shell):
  bash  batchctl completions bash > ~/.local/share/bash-completion/completions/batchctl
  zsh   batchctl completions zsh > ~/.zfunc/_batchctl   (with fpath+=(~/.zfunc) before compinit)
  fish  batchctl completions fish > ~/.config/fish/completions/batchctl.fish";

/// Writes the completion script for `args.shell` to `out`.
pub fn run(args: &CompletionsArgs, out: &mut (dyn Write + Send)) -> Result<Exit> {
    // Into a buffer first: clap_complete panics on a write error such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "batchctl", &mut script);
    out.write_all(&script)?;
    out.flush()?;
    Ok(Exit::Success)
}
