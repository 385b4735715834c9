//! Running a workload against the daemon and recording every request.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use indicatif::ProgressBar;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::plan::{self, Plan};
use super::sample::{record, Sample};
use crate::app::connect;
use crate::Client;

/// What a workload run produced.
#[derive(Debug)]
pub struct Outcome {
    /// Every request, in submission order (long-prompt: the streams, then the long one).
    pub samples: Vec<Sample>,
    /// What only long-prompt measures.
    pub long_prompt: Option<LongPrompt>,
}

/// The long-prompt workload's own measurements.
#[derive(Debug)]
pub struct LongPrompt {
    /// Decoding streams (the first samples; the long request is the last).
    pub streams: usize,
    /// The streams' inter-token gaps whose later token arrived while the long request was
    /// in flight (submit to done), in milliseconds.
    pub streams_gaps_ms: Vec<f64>,
}

/// Tasks each yielding some requests' samples tagged with their submission index.
type Tasks = JoinSet<Result<Vec<(usize, Sample)>>>;

/// Runs `plan` on `client` (uniform opens a connection per client to `socket`), moving
/// `done` on as requests finish. Any failed request fails the run; dropping the future
/// cancels what is in flight.
pub async fn run(
    plan: &Plan,
    client: &Client,
    socket: &Path,
    done: &ProgressBar,
) -> Result<Outcome> {
    match plan {
        Plan::Seed => {
            let mut tasks = Tasks::new();
            for (i, (prompt, max_tokens)) in plan::SEED.into_iter().enumerate() {
                spawn(
                    &mut tasks,
                    client,
                    i,
                    plan::request(prompt, max_tokens),
                    None,
                    done,
                )
                .await?;
            }
            Ok(Outcome {
                samples: join(tasks).await?,
                long_prompt: None,
            })
        }
        Plan::Uniform {
            clients,
            requests,
            max_tokens,
            prompt,
        } => {
            let (prompt, max_tokens) = (prompt.clone(), *max_tokens);
            uniform(
                socket,
                *clients,
                *requests,
                move |i| plan::request(prompt.text(i), max_tokens),
                done,
            )
            .await
        }
        Plan::LongPrompt {
            streams,
            prompt_tokens,
            max_tokens,
        } => long_prompt(client, *streams as usize, *prompt_tokens, *max_tokens, done).await,
    }
}

/// Submits request `i` and records it in a task of its own.
async fn spawn(
    tasks: &mut Tasks,
    client: &Client,
    i: usize,
    request: batchd_protocol::GenerateRequest,
    first_token: Option<oneshot::Sender<()>>,
    done: &ProgressBar,
) -> Result<()> {
    let submitted = Instant::now();
    let gen = client.generate(request).await?;
    let done = done.clone();
    tasks.spawn(async move {
        let sample = record(gen, submitted, first_token)
            .await
            .map_err(|e| anyhow!("request {i} failed: {e}"))?;
        done.inc(1);
        Ok(vec![(i, sample)])
    });
    Ok(())
}

/// Closed loop: each client sends its next request when its last one finished.
async fn uniform(
    socket: &Path,
    clients: u32,
    requests: u32,
    request: impl Fn(u32) -> batchd_protocol::GenerateRequest + Clone + Send + 'static,
    done: &ProgressBar,
) -> Result<Outcome> {
    // Connect everyone first, so handshakes don't count.
    let mut conns = Vec::new();
    for _ in 0..clients.min(requests) {
        conns.push(connect(socket).await?);
    }
    let next = Arc::new(AtomicU32::new(0));
    let mut tasks = Tasks::new();
    for client in conns {
        let (next, request, bar) = (next.clone(), request.clone(), done.clone());
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok(done);
                }
                let submitted = Instant::now();
                let gen = client.generate(request(i)).await?;
                let sample = record(gen, submitted, None)
                    .await
                    .map_err(|e| anyhow!("request {i} failed: {e}"))?;
                bar.inc(1);
                done.push((i as usize, sample));
            }
        });
    }
    Ok(Outcome {
        samples: join(tasks).await?,
        long_prompt: None,
    })
}

/// Starts the streams; once each has its first token, submits the long prompt.
async fn long_prompt(
    client: &Client,
    streams: usize,
    prompt_tokens: u32,
    max_tokens: u32,
    done: &ProgressBar,
) -> Result<Outcome> {
    let mut tasks = Tasks::new();
    let mut started = Vec::new();
    for i in 0..streams {
        let (tx, rx) = oneshot::channel();
        let prompt = plan::STREAM_PROMPTS[i % plan::STREAM_PROMPTS.len()];
        spawn(
            &mut tasks,
            client,
            i,
            plan::request(prompt, max_tokens),
            Some(tx),
            done,
        )
        .await?;
        started.push(rx);
    }
    for rx in started {
        // An error means the stream ended without a token: `join` reports why.
        if rx.await.is_err() {
            break;
        }
    }
    let long = plan::request(plan::long_prompt(prompt_tokens), plan::LONG_MAX_TOKENS);
    spawn(&mut tasks, client, streams, long, None, done).await?;
    let samples = join(tasks).await?;

    let long = &samples[streams];
    let streams_gaps_ms = samples[..streams]
        .iter()
        .flat_map(|s| s.gaps_within_ms(long.submitted, long.finished))
        .collect();
    Ok(Outcome {
        samples,
        long_prompt: Some(LongPrompt {
            streams,
            streams_gaps_ms,
        }),
    })
}

/// Waits for every task; the samples in submission order, or the first failure.
async fn join(mut tasks: Tasks) -> Result<Vec<Sample>> {
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(done) => all.extend(done?),
            Err(e) => bail!("a bench task failed: {e}"),
        }
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, s)| s).collect())
}
