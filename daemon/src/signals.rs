//! Shutdown on SIGTERM or SIGINT, through tokio's signal handling.

use std::future::Future;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Installs the handlers (call inside the runtime) and returns a future that resolves at
/// the first SIGTERM or SIGINT. From then on a second one exits at once, for an operator
/// who will not wait for the drain.
pub fn shutdown() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        next(&mut term, &mut int).await;
        tokio::spawn(async move {
            let signal = next(&mut term, &mut int).await;
            eprintln!("batchd: second signal ({signal}), exiting now");
            std::process::exit(1);
        });
    })
}

/// The number of the next signal to arrive.
async fn next(term: &mut Signal, int: &mut Signal) -> i32 {
    tokio::select! {
        _ = term.recv() => libc::SIGTERM,
        _ = int.recv() => libc::SIGINT,
    }
}
