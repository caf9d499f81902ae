//! The HTTP API: one module per area, the router, and what the handlers share — errors,
//! query parameters, the bearer check, and the two middlewares (every `/api/` error as
//! JSON; every request timed).
//!
//! `run` takes an already-bound listener, so tests bind port 0 and never race for ports.
//! The OpenAPI document (`GET /api/v1/openapi.json`) is generated from the handlers'
//! annotations and types as the router is built, so it cannot drift from the routes.

mod breakdowns;
mod buckets;
mod events;
mod export;
mod health;
mod metrics;
mod movers;
mod products;
mod projection;
mod sources;
mod top;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use topk_core::time::{Bucket, Granularity};
use topk_core::timestamp::format_rfc3339;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::dashboard;
use crate::state::AppState;

pub(crate) type Shared = Arc<AppState>;

/// The OpenAPI document's frame; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "topk",
        description = "Top-K products by sales, for any hour, day, ISO week, month, year or range: exact where the batch layer has spoken, with error bounds elsewhere. Times are UTC."
    ),
    components(schemas(ErrorReply, top::GroupedAnswer))
)]
struct ApiDoc;

/// Every error reply of the API.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorReply {
    /// What was wrong, and what to do.
    error: String,
}

/// The router of every endpoint, and the OpenAPI document that describes them.
pub fn router(state: Shared) -> Router {
    let limit = state.cfg.max_body_bytes;
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(top::top))
        .routes(routes!(movers::movers))
        .routes(routes!(projection::projection))
        .routes(routes!(products::search_products))
        .routes(routes!(products::product))
        .routes(routes!(products::trends))
        .routes(routes!(buckets::buckets))
        .routes(routes!(breakdowns::dimension))
        .routes(routes!(breakdowns::configured_sets))
        .routes(routes!(events::ingest))
        .routes(routes!(sources::source))
        .routes(routes!(sources::kafka_source))
        .routes(routes!(sources::resume_kafka_source))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    let doc = Arc::new(doc);
    api.route("/api/v1/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/favicon.ico", get(dashboard::favicon))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Times every request into the latency histogram, by route pattern.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state.telemetry.observe_request(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Every error under `/api/` is JSON `{"error": …}`, whoever produced it: a handler, or
/// axum itself (an unknown path, a wrong method, a path or query it could not decode).
async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !path.starts_with("/api/") || status.as_u16() < 400 || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = match axum::body::to_bytes(response.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = match (status, allow) {
        (StatusCode::NOT_FOUND, _) if text.is_empty() => {
            format!("no such endpoint: {method} {path} (the API is described at /api/v1/openapi.json)")
        }
        (StatusCode::METHOD_NOT_ALLOWED, allow) => {
            let allowed = allow.map(|a| format!(" (allowed: {a})")).unwrap_or_default();
            format!("{method} is not allowed on {path}{allowed}: see /api/v1/openapi.json")
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
        _ => text,
    };
    error(status, message)
}

/// A request the API refuses or cannot answer: a JSON `{"error": …}` reply.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

impl From<crate::stores::PoolError> for ApiError {
    fn from(e: crate::stores::PoolError) -> ApiError {
        use crate::stores::PoolError;
        let status = match e {
            PoolError::Closed | PoolError::Store(_) | PoolError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            PoolError::Panicked(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

/// A 503 says when to try again (`Retry-After`, in seconds): the conditions behind it (a
/// backlog of queries or ingests, a store or disk that failed) are passing ones.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut reply = (status, Json(json!({ "error": message.into() }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        reply.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    reply
}

pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// The bearer check of the endpoints that change something (ingest, resume): a handler
/// that takes `Authorized` runs only for a request with the token, when one is set.
pub(crate) struct Authorized;

impl FromRequestParts<Shared> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let Some(token) = &state.cfg.auth_token else { return Ok(Authorized) };
        // The scheme is case-insensitive (RFC 7235): "bearer" works as well as "Bearer".
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        // Compared in constant time (`subtle`) so the token cannot be guessed byte by byte.
        let same = given.is_some_and(|g| bool::from(subtle::ConstantTimeEq::ct_eq(g.as_bytes(), token.as_bytes())));
        if same {
            Ok(Authorized)
        } else {
            Err(ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)".into()))
        }
    }
}

/// A query string's parameters, rejecting unknown or repeated ones.
pub(crate) fn params(query: Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).map_err(|e| bad(format!("query string: {e}")))?;
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            return Err(bad(format!("unknown parameter {k:?} (allowed: {})", allowed.join(", "))));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(bad(format!("parameter {k:?} is given twice")));
        }
    }
    Ok(out)
}

/// `limit`: 1 to `max`, `default` when absent.
pub(crate) fn parse_limit(p: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match p.get("limit").map(|l| l.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(l)) if (1..=max).contains(&l) => Ok(l),
        Some(_) => Err(bad(format!("limit: a whole number from 1 to {max}"))),
    }
}

pub(crate) fn parse_granularity(p: &HashMap<String, String>) -> Result<Option<Granularity>, ApiError> {
    p.get("granularity").map(|g| g.parse::<Granularity>().map_err(|e| bad(format!("granularity: {e}")))).transpose()
}

/// `from`/`to`: the start of any bucket, by its label (`2026`, `2026-12`, `2026-W49`,
/// `2026-12-01`, `2026-12-01T05`), or an RFC 3339 timestamp on an hour boundary.
pub(crate) fn parse_instant(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    p.get(name).map(|s| instant(name, s)).transpose()
}

/// One such instant, `name` naming it in the error.
pub(crate) fn instant(name: &str, s: &str) -> Result<i64, ApiError> {
    match s.parse::<Bucket>() {
        Ok(b) => Ok(b.start_ms),
        Err(_) => Bucket::parse(Granularity::Hour, s).map(|b| b.start_ms).map_err(|e| {
            bad(format!("{name}: {e}; a bucket label (2026, 2026-12, 2026-W49, 2026-12-01, 2026-12-01T05) also works"))
        }),
    }
}

pub(crate) fn check_order(from_ms: i64, to_ms: i64) -> Result<(), ApiError> {
    if from_ms >= to_ms {
        return Err(bad(format!(
            "from must be before to (from {}, to {})",
            format_rfc3339(from_ms),
            format_rfc3339(to_ms)
        )));
    }
    Ok(())
}

impl AppState {
    /// How the serving layer judges the store's rows right now.
    pub(crate) fn rules(&self) -> crate::query::Rules {
        crate::query::Rules { now_ms: topk_core::clock::now_ms(), lambda: self.cfg.lambda }
    }
}
