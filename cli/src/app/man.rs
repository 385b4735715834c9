//! `batchctl man`: man pages generated from the argument parser, so they never fall
//! behind the flags.

use std::io::Write;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use super::args::{Cli, ManArgs};
use super::Exit;

/// How to install the pages, shown under `batchctl man --help`.
pub const INSTALL_HELP: &str = "\
Install for your user (man finds ~/.local/share/man by itself):
  mkdir -p ~/.local/share/man/man1 && batchctl man --dir ~/.local/share/man/man1
Read one without installing: batchctl man | man -l -";

/// Prints `batchctl.1`, or writes every page into `args.dir`.
pub fn run(args: &ManArgs, out: &mut (dyn Write + Send)) -> Result<Exit> {
    let cmd = Cli::command();
    match &args.dir {
        Some(dir) => clap_mangen::generate_to(cmd, dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?,
        None => clap_mangen::Man::new(cmd).render(out)?,
    }
    out.flush()?;
    Ok(Exit::Success)
}
