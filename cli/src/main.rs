//! `batchctl`: command-line client for batchd.

use std::process::ExitCode;

use batchctl::app::{self, Cli, Interrupt};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("batchctl: cannot start the async runtime: {e}");
            return ExitCode::from(app::EXIT_FAILURE);
        }
    };
    let code = runtime.block_on(async {
        let interrupt = Interrupt::ctrl_c();
        let mut out = std::io::stdout();
        match app::run(&cli, &mut out, &interrupt).await {
            Ok(exit) => exit.code(),
            Err(e) => {
                if let Some(line) = app::error_line(&e) {
                    eprintln!("{line}");
                }
                app::exit_code(&e)
            }
        }
    });
    ExitCode::from(code)
}
