//! `batchctl generate`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use batchd_protocol::ErrorCode;

use super::args::GenerateArgs;
use super::{connect, json, prompts, Exit, Interrupt, RequestsFailed};
use crate::{CancelHandle, ClientError, Event, Generation};

/// How long cancelled requests get to report their `Done` after Ctrl-C.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Submits every prompt at once on one connection and prints the results.
pub async fn run(
    args: &GenerateArgs,
    socket: &Path,
    out: &mut (dyn Write + Send),
    interrupt: &Interrupt,
) -> Result<Exit> {
    let prompts = match prompts::source(&args.prompts, args.file.as_deref())? {
        prompts::Source::Args(p) => p,
        prompts::Source::File(f) => prompts::read_file(&f)?,
        prompts::Source::Stdin => tokio::select! {
            p = prompts::read_stdin() => p?,
            _ = interrupt.wait() => return Ok(Exit::Interrupted),
        },
    };
    // One prompt without --json streams; otherwise the daemon sends whole outputs.
    let stream = prompts.len() == 1 && !args.json;

    let submit = async {
        let client = connect(socket).await?;
        let mut gens = Vec::with_capacity(prompts.len());
        for p in prompts {
            gens.push(client.generate(args.request(p, stream)).await?);
        }
        Ok::<_, anyhow::Error>(gens)
    };
    let gens = tokio::select! {
        g = submit => g?,
        _ = interrupt.wait() => return Ok(Exit::Interrupted),
    };
    let handles: Vec<CancelHandle> = gens.iter().map(Generation::cancel_handle).collect();

    let print = async {
        if stream {
            let gen = gens.into_iter().next().expect("one prompt");
            print_stream(gen, out).await
        } else if args.json {
            print_json(gens, out).await
        } else {
            print_plain(gens, out).await
        }
    };
    // On Ctrl-C, cancel everything and let the output finish with the cancelled results,
    // but don't wait for a daemon that doesn't answer.
    let give_up = async {
        interrupt.wait().await;
        for h in &handles {
            h.cancel();
        }
        tokio::time::sleep(CANCEL_GRACE).await;
    };
    let printed = tokio::select! {
        r = print => Some(r),
        _ = give_up => None,
    };
    if interrupt.is_set() {
        return Ok(Exit::Interrupted);
    }
    printed.expect("give_up only ends after an interrupt")?;
    Ok(Exit::Success)
}

/// Prints the text of one streaming request as it arrives.
async fn print_stream(mut gen: Generation, out: &mut (dyn Write + Send)) -> Result<()> {
    let mut mid_line = false;
    while let Some(ev) = gen.next().await {
        match ev {
            Event::Token { text, .. } => {
                if !text.is_empty() {
                    out.write_all(text.as_bytes())?;
                    out.flush()?;
                    mid_line = true;
                }
            }
            Event::Done(done) => {
                writeln!(out, "{}", done.final_text)?;
                out.flush()?;
                return Ok(());
            }
            Event::Error { code, message } => {
                if mid_line {
                    writeln!(out)?;
                    out.flush()?;
                }
                return Err(ClientError::Server { code, message }.into());
            }
        }
    }
    unreachable!("a generation ends with Done or Error")
}

/// Prints each completion in input order under a `--- [i] finish_reason` header.
async fn print_plain(gens: Vec<Generation>, out: &mut (dyn Write + Send)) -> Result<()> {
    let total = gens.len();
    let mut failed = Vec::new();
    for (i, gen) in gens.into_iter().enumerate() {
        match outcome(gen).await? {
            Ok(c) => {
                writeln!(out, "--- [{i}] {}", c.done.finish_reason.as_str())?;
                writeln!(out, "{}", c.text)?;
            }
            Err((code, message)) => {
                failed.push(code);
                writeln!(out, "--- [{i}] error: {}", code.as_str())?;
                writeln!(out, "{message}")?;
            }
        }
        out.flush()?;
    }
    check(failed, total)
}

/// Prints one JSON object per request, in input order.
async fn print_json(gens: Vec<Generation>, out: &mut (dyn Write + Send)) -> Result<()> {
    let total = gens.len();
    let mut failed = Vec::new();
    for (i, gen) in gens.into_iter().enumerate() {
        let v = match outcome(gen).await? {
            Ok(c) => json::completion(i, &c),
            Err((code, message)) => {
                failed.push(code);
                json::request_error(i, code, &message)
            }
        };
        writeln!(out, "{v}")?;
        out.flush()?;
    }
    check(failed, total)
}

/// A request's result, its error from the daemon, or (outer `Err`) a failure that ends
/// the whole command.
async fn outcome(
    gen: Generation,
) -> Result<std::result::Result<crate::Completion, (ErrorCode, String)>> {
    match gen.collect().await {
        Ok(c) => Ok(Ok(c)),
        Err(ClientError::Server { code, message }) => Ok(Err((code, message))),
        Err(e) => Err(e.into()),
    }
}

/// Fails with every failed request's code, which choose the exit status.
fn check(failed: Vec<ErrorCode>, total: usize) -> Result<()> {
    if !failed.is_empty() {
        return Err(RequestsFailed {
            codes: failed,
            total,
        }
        .into());
    }
    Ok(())
}
