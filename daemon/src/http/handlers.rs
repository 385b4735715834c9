//! The endpoints: completions, chat, models, health and metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use batchd_protocol::{ErrorCode, GenerateRequest, ModelInfo};
use serde_json::json;
use tokio::sync::watch;

use super::api::{parse, ChatRequest, CompletionRequest, Params};
use super::chat::ChatFormat;
use super::error::ApiError;
use super::metrics::Metrics;
use super::response::{Header, Kind, Usage};
use super::sse;
use super::submit::{Engine, Event};
use crate::router::Command;

/// OpenAI's default `max_tokens` for text completions.
const COMPLETION_MAX_TOKENS: u32 = 16;
/// Chat has no such default upstream (it runs to the context's end); this bounds a
/// request that forgot to say.
const CHAT_MAX_TOKENS: u32 = 1024;

/// What every handler shares.
pub struct AppState {
    /// `None` while the model loads.
    ready: watch::Receiver<Option<Arc<Ready>>>,
    metrics: Arc<Metrics>,
    /// Largest request body, the same limit as a socket frame.
    max_body: usize,
    draining: watch::Receiver<bool>,
    serial: AtomicU64,
}

/// What the API needs of a loaded model.
pub struct Ready {
    engine: Engine,
    model: ModelInfo,
    chat: ChatFormat,
}

impl Ready {
    pub fn new(commands: std_mpsc::Sender<Command>, model: ModelInfo, chat: ChatFormat) -> Self {
        Self {
            engine: Engine::new(commands),
            model,
            chat,
        }
    }

    fn check_model(&self, model: Option<&str>) -> Result<(), ApiError> {
        match model {
            Some(m) if m != self.model.name => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "model_not_found",
                format!(
                    "the model {m:?} does not exist here; this batchd serves {:?}",
                    self.model.name
                ),
            )),
            _ => Ok(()),
        }
    }
}

type Shared = Arc<AppState>;

impl AppState {
    pub fn new(
        ready: watch::Receiver<Option<Arc<Ready>>>,
        max_body: usize,
        draining: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ready,
            metrics: Arc::default(),
            max_body,
            draining,
            serial: AtomicU64::new(1),
        }
    }

    /// The loaded model, once it is: a request that comes while it loads waits for it, as
    /// a client of the main socket does.
    async fn ready(&self) -> Result<Arc<Ready>, ApiError> {
        let mut ready = self.ready.clone();
        let loaded = ready.wait_for(Option::is_some).await;
        let loaded = loaded.map_err(|_| ApiError::engine_gone())?;
        Ok(Arc::clone(loaded.as_ref().expect("waited for it")))
    }

    fn draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Runs `requests` as the choices of one response, streamed or whole.
    async fn generate(
        &self,
        r: &Ready,
        kind: Kind,
        requests: Vec<GenerateRequest>,
        params: &Params,
    ) -> Result<Response, ApiError> {
        if self.draining() {
            return Err(ApiError::from_engine(
                ErrorCode::ShuttingDown,
                "batchd is shutting down and takes no new requests".into(),
            ));
        }
        let n = requests.len();
        let header = Header::new(
            kind,
            self.serial.fetch_add(1, Ordering::Relaxed),
            &r.model.name,
            requests.iter().any(|r| r.logprobs.is_some()),
        );
        let mut submission = r.engine.submit(requests)?;
        // Refusals come before any token, so the first event decides the status code.
        let first = submission.next().await.ok_or_else(ApiError::engine_gone)?;
        if let Event::Failed { error } = first {
            return Err(error);
        }
        if params.stream() {
            return Ok(sse::respond(
                submission,
                first,
                header,
                n,
                params.include_usage(),
                self.metrics.clone(),
            ));
        }
        let mut choices = vec![None; n];
        let mut usage = Usage::default();
        let mut pending = Some(first);
        while choices.iter().any(Option::is_none) {
            let event = match pending.take() {
                Some(e) => e,
                None => submission.next().await.ok_or_else(ApiError::engine_gone)?,
            };
            match event {
                Event::Token { .. } => {} // only streams get tokens
                Event::Done { index, done } => {
                    self.metrics.request_done(&done);
                    usage.add(&done);
                    choices[index] = Some(header.choice(index, &done));
                }
                Event::Failed { error } => return Err(error),
            }
        }
        Ok(
            Json(header.body(choices.into_iter().flatten().collect(), usage.json()))
                .into_response(),
        )
    }
}

/// All endpoints, counted in the metrics.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(s): State<Shared>, request: Request, next: Next) -> Response {
    // Unknown paths share one label, so scanners cannot grow the metrics without bound.
    let path = match request.uri().path() {
        p
        @ ("/v1/completions" | "/v1/chat/completions" | "/v1/models" | "/health" | "/metrics") => p,
        _ => "other",
    }
    .to_string();
    let response = next.run(request).await;
    s.metrics.request(&path, response.status().as_u16());
    response
}

/// The body, up to the frame limit (413 past it).
async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::from_engine(
                ErrorCode::FrameTooLarge,
                format!("the request body is larger than {limit} bytes (--max-frame)"),
            )
        } else {
            ApiError::invalid(format!("cannot read the request body: {e}"))
        }
    })
}

async fn completions(State(s): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&read_body(body, s.max_body).await?)?;
    let r = s.ready().await?;
    r.check_model(request.model.as_deref())?;
    let prompts = request.prompt.into_vec();
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt must not be an empty list"));
    }
    let requests = prompts
        .into_iter()
        .map(|p| {
            request
                .params
                .to_generate(Kind::Completion, p, None, COMPLETION_MAX_TOKENS)
        })
        .collect::<Result<Vec<_>, _>>()?;
    s.generate(&r, Kind::Completion, requests, &request.params)
        .await
}

async fn chat(State(s): State<Shared>, body: Body) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&read_body(body, s.max_body).await?)?;
    let r = s.ready().await?;
    r.check_model(request.model.as_deref())?;
    if request.messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty"));
    }
    let messages = request
        .messages
        .iter()
        .map(|m| Ok((m.role.clone(), m.content.text()?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let prompt = r.chat.render(&messages)?;
    let generate = request.params.to_generate(
        Kind::Chat,
        prompt,
        request.max_completion_tokens,
        CHAT_MAX_TOKENS,
    )?;
    s.generate(&r, Kind::Chat, vec![generate], &request.params)
        .await
}

async fn models(State(s): State<Shared>) -> Result<Json<serde_json::Value>, ApiError> {
    let r = s.ready().await?;
    Ok(Json(json!({
        "object": "list",
        "data": [{"id": r.model.name, "object": "model", "created": 0, "owned_by": "batchd"}],
    })))
}

/// 200 `{"status": "ok"}` while serving; 503 while the model loads and once draining, with
/// `status` `loading` or `draining` beside an OpenAI-style error. The one endpoint that
/// answers during the load, so a supervisor can tell "starting" from "stuck".
async fn health(State(s): State<Shared>) -> Response {
    let (status, message) = if s.draining() {
        ("draining", "batchd is shutting down")
    } else if s.ready.borrow().is_none() {
        ("loading", "batchd is loading the model")
    } else {
        return Json(json!({"status": "ok"})).into_response();
    };
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    let mut body = ApiError::new(unavailable, "unavailable_error", status, message.into()).body();
    body["status"] = json!(status);
    (unavailable, Json(body)).into_response()
}

async fn metrics(State(s): State<Shared>) -> Result<Response, ApiError> {
    let r = s.ready().await?;
    s.metrics.watch_steps(&r.engine);
    let status = r.engine.status().await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(&status),
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        "no such endpoint".into(),
    )
}
