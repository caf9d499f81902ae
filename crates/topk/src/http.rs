//! The HTTP front of `topk serve`: the Top-K API and the dashboard, ingest, health,
//! metrics, and source positions for remote replay.
//!
//! `run` takes an already-bound listener, so tests bind port 0 and never race for ports.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use topk_core::time::{Bucket, Granularity};
use topk_core::timestamp::format_rfc3339;
use topk_speed::Architecture;
use topk_store::{By, SqlStore, Store, StoreError};

use crate::metrics::{header, sample};
use crate::pipeline::{now_ms, Pipeline, SourceResume};
use crate::{dashboard, query};

/// Ingest requests handled at once: each may hold a large body and its parse buffers.
pub const MAX_CONCURRENT_INGESTS: usize = 4;

/// What the handlers share.
pub struct AppState {
    pub pipeline: Pipeline,
    stores: Arc<StorePool>,
    cache: ResponseCache,
    /// Bounds concurrent ingests (memory), and lets shutdown wait for them to finish.
    pub ingests: Arc<tokio::sync::Semaphore>,
    /// Serialises ingests that carry a replay position: checking how far a source got and
    /// appending its next lines must not interleave with a retry of the same lines.
    sources: Mutex<()>,
    /// The store's exact generation as last read, and when.
    generation: Mutex<Option<((i64, i64), Instant)>>,
}

/// How long the store's exact generation is trusted before it is read again: a cached
/// exact answer outlives a re-roll by at most this much.
const GENERATION_CHECK: Duration = Duration::from_millis(250);

impl AppState {
    pub fn new(pipeline: Pipeline) -> Self {
        AppState {
            stores: Arc::new(StorePool::new(pipeline.cfg.store.clone())),
            cache: ResponseCache::default(),
            pipeline,
            ingests: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_INGESTS)),
            sources: Mutex::new(()),
            generation: Mutex::new(None),
        }
    }

    /// How the serving layer judges the store's rows right now.
    fn rules(&self) -> query::Rules {
        query::Rules { now_ms: now_ms(), lambda: self.pipeline.cfg.speed.architecture == Architecture::Lambda }
    }

    /// The store's exact generation (see `Store::exact_generation`), read at most every
    /// [`GENERATION_CHECK`].
    async fn exact_generation(&self) -> Result<(i64, i64), ApiError> {
        if let Some((g, at)) = *self.generation.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < GENERATION_CHECK {
                return Ok(g);
            }
        }
        let g = self.stores.with(|s| s.exact_generation()).await?;
        *self.generation.lock().unwrap_or_else(|e| e.into_inner()) = Some((g, Instant::now()));
        Ok(g)
    }
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let limit = state.pipeline.cfg.max_body_bytes;
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/v1/top", get(top))
        .route("/api/v1/products", get(search_products))
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/buckets", get(buckets))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/events", post(ingest))
        .route("/api/v1/sources/{id}", get(source))
        .route("/api/v1/sources/kafka", get(kafka_source))
        .route("/api/v1/sources/kafka/resume", post(resume_kafka_source))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/favicon.ico", get(dashboard::favicon))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
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

/// Times every request into the latency histogram, by route pattern.
async fn observe(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state.pipeline.metrics.observe_request(&route, status, started.elapsed().as_secs_f64());
    response
}

/// Read connections to the store, reused between requests. Queries run at most two per
/// core at once: more would only thrash the CPU and the page cache, and lengthen every
/// request's wait.
struct StorePool {
    location: String,
    idle: Mutex<Vec<SqlStore>>,
    running: tokio::sync::Semaphore,
}

impl StorePool {
    fn new(location: String) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        StorePool { location, idle: Mutex::default(), running: tokio::sync::Semaphore::new(2 * cores) }
    }

    /// Runs `f` on a pooled connection, on the blocking thread pool.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut SqlStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let Ok(_running) = self.running.acquire().await else {
            return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()));
        };
        let pool = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut store = match idle {
                Some(s) => s,
                None => SqlStore::open(&pool.location)?,
            };
            let out = f(&mut store);
            pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(store);
            out
        })
        .await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("reading the store: {e}"))),
            Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("query failed: {e}"))),
        }
    }
}

/// How long an answer may be reused: exact answers of ended periods change only when
/// late data reaches the batch layer; the others with every write.
const EXACT_TTL: Duration = Duration::from_secs(60);
const APPROXIMATE_TTL: Duration = Duration::from_secs(1);
/// Entries kept at most; when full, expired ones are dropped, and if that is not
/// enough, all of them.
const CACHE_ENTRIES: usize = 10_000;

/// One answer, computed once however many requests ask for it at the same moment.
type Slot = Arc<tokio::sync::OnceCell<(Bytes, Duration, Instant)>>;

/// Serialised answers by canonical request. Concurrent requests for the same key share
/// one computation (no stampede when an entry expires under load).
#[derive(Default)]
struct ResponseCache {
    entries: Mutex<HashMap<String, Slot>>,
}

impl ResponseCache {
    /// The cached answer, or the one `compute` makes (with its time to live). Returns
    /// whether it was a hit.
    async fn get_or_compute<F>(&self, key: String, compute: F) -> Result<(Bytes, Duration, bool), ApiError>
    where
        F: std::future::Future<Output = Result<(Bytes, Duration), ApiError>>,
    {
        let slot = {
            let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let fresh = |s: &Slot| s.get().is_none_or(|(_, ttl, at)| at.elapsed() < *ttl);
            match entries.get(&key).filter(|s| fresh(s)) {
                Some(slot) => slot.clone(),
                None => {
                    if entries.len() >= CACHE_ENTRIES {
                        entries.retain(|_, s| s.get().is_some_and(|(_, ttl, at)| at.elapsed() < *ttl));
                        if entries.len() >= CACHE_ENTRIES {
                            entries.clear();
                        }
                    }
                    entries.entry(key).insert_entry(Slot::default()).get().clone()
                }
            }
        };
        let mut computed = false;
        let (body, ttl, _) = slot
            .get_or_try_init(|| async {
                computed = true;
                let (body, ttl) = compute.await?;
                Ok::<_, ApiError>((body, ttl, Instant::now()))
            })
            .await?;
        Ok((body.clone(), *ttl, !computed))
    }
}

fn json_body(body: Bytes, hit: bool, ttl: Duration) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "application/json".to_string()),
        (header::CACHE_CONTROL, format!("max-age={}", ttl.as_secs())),
        (header::HeaderName::from_static("x-cache"), if hit { "hit" } else { "miss" }.to_string()),
    ];
    (headers, body).into_response()
}

/// A query string's parameters, rejecting unknown or repeated ones.
fn params(query: Option<String>, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
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

/// A request the API refuses or cannot answer: a JSON `{"error": …}` reply.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn parse_granularity(p: &HashMap<String, String>) -> Result<Option<Granularity>, ApiError> {
    p.get("granularity").map(|g| g.parse::<Granularity>().map_err(|e| bad(format!("granularity: {e}")))).transpose()
}

/// `from`/`to`: the start of any bucket, by its label (`2026`, `2026-12`, `2026-W49`,
/// `2026-12-01`, `2026-12-01T05`), or an RFC 3339 timestamp on an hour boundary.
fn parse_instant(p: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    let parse = |s: &str| match s.parse::<Bucket>() {
        Ok(b) => Ok(b.start_ms),
        Err(_) => Bucket::parse(Granularity::Hour, s).map(|b| b.start_ms).map_err(|e| {
            bad(format!("{name}: {e}; a bucket label (2026, 2026-12, 2026-W49, 2026-12-01, 2026-12-01T05) also works"))
        }),
    };
    p.get(name).map(|s| parse(s)).transpose()
}

/// The longest range one query may cover.
const MAX_RANGE_DAYS: i64 = 5 * 366;

fn check_order(from_ms: i64, to_ms: i64) -> Result<(), ApiError> {
    if from_ms >= to_ms {
        return Err(bad(format!(
            "from must be before to (from {}, to {})",
            format_rfc3339(from_ms),
            format_rfc3339(to_ms)
        )));
    }
    Ok(())
}

/// A `/top` range: ordered, and no longer than [`MAX_RANGE_DAYS`].
fn check_range(from_ms: i64, to_ms: i64) -> Result<(), ApiError> {
    check_order(from_ms, to_ms)?;
    if to_ms - from_ms > MAX_RANGE_DAYS * 24 * topk_core::HOUR_MS {
        return Err(bad(format!(
            "the range covers {} days; one query may cover at most {MAX_RANGE_DAYS} days",
            (to_ms - from_ms) / (24 * topk_core::HOUR_MS)
        )));
    }
    Ok(())
}

/// `GET /api/v1/top`: the period's top K, exact where the batch layer has spoken.
async fn top(State(state): State<Shared>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let p = params(query, &["granularity", "start", "from", "to", "k", "by"])?;
    let TopRequest { buckets, k, by } = parse_top(&p)?;
    let cache = state.pipeline.cfg.api_cache;
    // An answer is reused only while the exact rows it was computed from stay the same.
    let generation = if cache { state.exact_generation().await? } else { (0, 0) };
    let key = format!("top {generation:?} {buckets:?} {k} {}", by.as_str());
    let rules = state.rules();
    let compute = async {
        let answer = state.stores.with(move |s| query::top(s, buckets, k, by, rules)).await?;
        let ttl = if answer.exact && !answer.open { EXACT_TTL } else { APPROXIMATE_TTL };
        Ok((Bytes::from(serde_json::to_vec(&answer).expect("answers serialise")), ttl))
    };
    let (body, ttl, hit) = if cache {
        state.cache.get_or_compute(key, compute).await?
    } else {
        let (body, ttl) = compute.await?;
        (body, ttl, false)
    };
    Ok(json_body(body, hit, ttl))
}

struct TopRequest {
    buckets: Vec<Bucket>,
    k: usize,
    by: By,
}

fn parse_top(p: &HashMap<String, String>) -> Result<TopRequest, ApiError> {
    let k = match p.get("k") {
        None => 10,
        Some(k) => match k.parse::<usize>() {
            Ok(k) if (1..=query::MAX_K).contains(&k) => k,
            _ => return Err(bad(format!("k: {k:?} is not a whole number from 1 to {}", query::MAX_K))),
        },
    };
    let by = match p.get("by").map(String::as_str) {
        None | Some("quantity") => By::Quantity,
        Some("revenue") => By::Revenue,
        Some(other) => return Err(bad(format!("by: {other:?} is not one of quantity, revenue"))),
    };
    let granularity = parse_granularity(p)?;
    let buckets = match (granularity, p.contains_key("from") || p.contains_key("to")) {
        (Some(_), true) => return Err(bad("give either granularity (and start) or from and to, not both")),
        (Some(g), false) => {
            let bucket = match p.get("start") {
                Some(s) => Bucket::parse(g, s).map_err(|e| bad(format!("start: {e}")))?,
                None => Bucket::containing(g, now_ms()),
            };
            vec![bucket]
        }
        (None, true) => {
            let (Some(from), Some(to)) = (parse_instant(p, "from")?, parse_instant(p, "to")?) else {
                return Err(bad("a range needs both from and to"));
            };
            check_range(from, to)?;
            topk_core::time::decompose(from, to).map_err(|e| bad(e.to_string()))?
        }
        (None, false) if p.contains_key("start") => return Err(bad("start needs a granularity")),
        (None, false) => return Err(bad("give granularity (and optionally start), or from and to")),
    };
    Ok(TopRequest { buckets, k, by })
}

/// `GET /api/v1/products/{id}`: the product's count and rank per bucket over a range
/// (default: the last 30 days, or 48 hours, 26 weeks, 24 months, 10 years).
async fn product(
    State(state): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let p = params(query, &["granularity", "from", "to"])?;
    topk_core::event::check_id("product id", &id).map_err(bad)?;
    let g = parse_granularity(&p)?.unwrap_or(Granularity::Day);
    let to = parse_instant(&p, "to")?.unwrap_or_else(|| Bucket::containing(g, now_ms()).end_ms());
    let from = match parse_instant(&p, "from")? {
        Some(from) => from,
        None => {
            let span = match g {
                Granularity::Hour => 48,
                Granularity::Day => 30,
                Granularity::Week => 26,
                Granularity::Month => 24,
                Granularity::Year => 10,
            };
            (0..span).fold(Bucket::containing(g, to - 1), |b, _| b.prev()).next().start_ms
        }
    };
    check_order(from, to)?;
    let buckets = (to - from) / Bucket::containing(g, from).duration_ms().max(1);
    if buckets > 2000 {
        return Err(bad(format!("about {buckets} {g} buckets; at most 2000 per query: use a coarser granularity")));
    }
    let rules = state.rules();
    let shown = id.clone();
    match state.stores.with(move |s| query::history(s, &id, g, from, to, rules)).await? {
        Some(history) => Ok(Json(history).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("product {shown:?} was never seen: no event named it (ids are exact, case included)"),
        )),
    }
}

/// `GET /api/v1/products?q=`: products whose id or name starts with `q`.
async fn search_products(State(state): State<Shared>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let p = params(query, &["q", "limit"])?;
    let q = p.get("q").map(|q| q.trim().to_string()).unwrap_or_default();
    if q.is_empty() {
        return Err(bad("q: give the start of a product id or name"));
    }
    let limit = match p.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return Err(bad("limit: a whole number from 1 to 100")),
    };
    let found = state.stores.with(move |s| s.search_products(&q, limit)).await?;
    Ok(Json(json!({ "products": found })).into_response())
}

/// `GET /api/v1/buckets?granularity=`: the buckets that have data, and which are exact.
async fn buckets(State(state): State<Shared>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let p = params(query, &["granularity", "from", "to"])?;
    let Some(g) = parse_granularity(&p)? else {
        return Err(bad("granularity: one of hour, day, week, month, year"));
    };
    let from = parse_instant(&p, "from")?.unwrap_or(i64::MIN);
    let to = parse_instant(&p, "to")?.unwrap_or(i64::MAX);
    check_order(from, to)?;
    let rules = state.rules();
    let found = state.stores.with(move |s| query::buckets(s, g, from, to, rules)).await?;
    Ok(Json(json!({ "granularity": g, "buckets": found })).into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("openapi.json")).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.pipeline.cfg.auth_token else { return true };
    // The scheme is case-insensitive (RFC 7235): "bearer" works as well as "Bearer".
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    // Compare in constant time so the token cannot be guessed byte by byte.
    given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    })
}

/// Where a request's body sits in a replayed file (`topk replay --server`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceParams {
    source: Option<u64>,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    line: Option<u64>,
}

/// How long an ingest request waits for one of the [`MAX_CONCURRENT_INGESTS`] places
/// before it is turned away with 503.
const INGEST_QUEUE_WAIT: Duration = Duration::from_secs(30);

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Decodes a gzip body, every member of it (as `gzip -d` does), into at most `limit`
/// bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    // One byte past the limit tells "at the limit" from "over it" (gzip bombs).
    match flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => {
            Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("decompressed body is over {limit} bytes")))
        }
        Ok(_) => Ok(out),
        Err(e) => Err(bad(format!(
            "body is not valid gzip after {} decompressed bytes: {e} (trailing bytes after the last gzip member are refused)",
            out.len()
        ))),
    }
}

/// `POST /api/v1/events`. The request takes one of [`MAX_CONCURRENT_INGESTS`] places
/// before its body is read, so at most that many bodies (and their decompressed and
/// encoded copies) are in memory at once, whatever the number of clients.
async fn ingest(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    if !authorized(&state, &headers) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer …)".into(),
        ));
    }
    let params: SourceParams = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| bad(format!("query string: {e} (allowed: source, offset, line)")))?;
    if params.line.is_some_and(|l| l == 0 || l > u64::MAX / 2) || params.offset > u64::MAX / 2 {
        return Err(bad("line must be at least 1 and offset a file position"));
    }
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("" | "identity") => false,
        Some("gzip" | "x-gzip") => true,
        Some(other) => {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Encoding {other:?} is not supported: send the body plain or gzip-compressed"),
            ))
        }
    };
    let permit = match tokio::time::timeout(INGEST_QUEUE_WAIT, state.ingests.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())),
        Err(_) => {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                "{MAX_CONCURRENT_INGESTS} ingest requests are being processed and this one waited {} s: retry later",
                INGEST_QUEUE_WAIT.as_secs()
            ),
            ))
        }
    };
    let limit = state.pipeline.cfg.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("body is over {limit} bytes (max_body_bytes)"))
        } else {
            bad(format!("reading the body: {e}"))
        }
    })?;
    let body = if gzip {
        Bytes::from(gunzip(&body, limit)?)
    } else if body.starts_with(&GZIP_MAGIC) {
        return Err(bad("the body looks gzip-compressed: send it with Content-Encoding: gzip"));
    } else {
        body
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty body: send NDJSON, one event per line"));
    }
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut ingestor = st.pipeline.ingestor();
        match params.source {
            Some(id) if id != 0 => {
                let _one_at_a_time = st.sources.lock().unwrap_or_else(|e| e.into_inner());
                let (mut resume, _) = SourceResume::load(&*st.pipeline.events, id)?;
                let line = params.line.unwrap_or(1);
                ingestor.ingest_ndjson(&body, line, params.offset, Some(&mut resume))
            }
            _ => ingestor.ingest_ndjson(&body, 1, 0, None),
        }
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            let status = if report.accepted == 0 && report.already_ingested == 0 && report.rejected_count > 0 {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            Ok((status, Json(report)).into_response())
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "ingest append failed");
            state.pipeline.record_failure(format!("ingest: could not append to the events log: {e}"));
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("could not append to the events log: {e}")))
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("ingest task failed: {e}"))),
    }
}

async fn source(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)");
    }
    // On Kafka this reads the topic: off the async workers.
    let st = state.clone();
    match tokio::task::spawn_blocking(move || SourceResume::load(&*st.pipeline.events, id)).await {
        Ok(Ok((_, start))) => Json(json!({ "source": id, "offset": start.pos, "line": start.line })).into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    if let Some(why) = state.pipeline.source.paused() {
        let hint = "resume with `topk resume --server URL` or POST /api/v1/sources/kafka/resume";
        return (StatusCode::SERVICE_UNAVAILABLE, format!("source paused: {why}; {hint}\n")).into_response();
    }
    match state.pipeline.failure() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(f) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {f}\n")).into_response(),
    }
}

/// The plain Kafka source: its topic, whether it is paused and why, and its counters.
async fn kafka_source(State(state): State<Shared>) -> Response {
    let source = &state.pipeline.source;
    Json(json!({
        "topic": state.pipeline.cfg.source.as_ref().map(|s| s.topic.clone()),
        "paused": source.paused(),
        "consumed": source.consumed.load(std::sync::atomic::Ordering::Relaxed),
        "dead_letters": source.dead_letters.load(std::sync::atomic::Ordering::Relaxed),
    }))
    .into_response()
}

/// Lets a source paused by its reject rate go on (`topk resume`).
async fn resume_kafka_source(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer …)");
    }
    if state.pipeline.cfg.source.is_none() {
        return error(StatusCode::NOT_FOUND, "no source_topic is configured on this process");
    }
    let resumed = state.pipeline.source.resume();
    Json(json!({ "resumed": resumed })).into_response()
}

async fn readyz(State(state): State<Shared>) -> Response {
    healthz(State(state)).await
}

/// Prometheus text exposition: ingest and API counters, each role's lag, the batch
/// layer's runs, and the speed layer's accuracy per granularity (latest scored bucket).
async fn metrics(State(state): State<Shared>) -> Result<Response, ApiError> {
    let (records, runs) = state.stores.with(|s| Ok((s.accuracy(1000)?, s.run_stats()?))).await?;
    let mut out = String::new();
    state.pipeline.metrics.render(&mut out);
    // Log positions may come over the network (Kafka): off the async workers.
    let st = state.clone();
    let lag = tokio::task::spawn_blocking(move || {
        let mut lag = String::new();
        st.pipeline.render_lag(&mut lag).map(|()| lag)
    })
    .await;
    match lag {
        Ok(Ok(lag)) => out.push_str(&lag),
        Ok(Err(e)) => return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("reading log positions: {e}"))),
        Err(e) => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("reading log positions: {e}"))),
    }
    if let Some(settings) = &state.pipeline.cfg.source {
        let source = &state.pipeline.source;
        let topic = [("topic", settings.topic.as_str())];
        let paused = if source.paused().is_some() { 1 } else { 0 };
        header(&mut out, "topk_source_paused", "gauge", "1 while the Kafka source is paused by its reject rate");
        sample(&mut out, "topk_source_paused", &topic, paused);
        header(&mut out, "topk_source_consumed_total", "counter", "messages read from the source topic");
        sample(&mut out, "topk_source_consumed_total", &topic, source.consumed.load(Ordering::Relaxed));
        header(
            &mut out,
            "topk_dead_letters_total",
            "counter",
            "rejected source messages sent to the dead-letter topic",
        );
        sample(&mut out, "topk_dead_letters_total", &topic, source.dead_letters.load(Ordering::Relaxed));
    }
    header(&mut out, "topk_batch_runs_total", "counter", "batch-layer task runs, by task and status");
    for r in &runs {
        sample(&mut out, "topk_batch_runs_total", &[("task", &r.task), ("status", r.status.as_str())], r.runs);
    }
    header(&mut out, "topk_batch_run_seconds_total", "counter", "time spent in finished batch-layer runs");
    for r in &runs {
        let secs = r.duration_ms as f64 / 1000.0;
        sample(&mut out, "topk_batch_run_seconds_total", &[("task", &r.task), ("status", r.status.as_str())], secs);
    }
    type Field = fn(&topk_core::accuracy::Accuracy) -> f64;
    let gauges: [(&str, &str, Field); 5] = [
        ("precision_at_10", "share of the speed layer's top 10 in the true top 10", |a| a.precision_at_10),
        ("precision_at_100", "share of the speed layer's top 100 in the true top 100", |a| a.precision_at_100),
        ("max_relative_error", "largest relative error over the true top 10", |a| a.max_relative_error),
        ("mean_relative_error", "mean relative error over the true top 10", |a| a.mean_relative_error),
        ("bound_coverage", "share of reported rows whose true count lay inside the error bound", |a| a.bound_coverage),
    ];
    for (name, help, field) in gauges {
        let name = format!("topk_speed_{name}");
        header(&mut out, &name, "gauge", &format!("{help}, latest scored bucket"));
        for g in Granularity::ALL {
            // Newest first: the first record of a granularity is its latest.
            if let Some(r) = records.iter().find(|r| r.bucket.granularity == g) {
                sample(&mut out, &name, &[("granularity", g.as_str())], field(&r.accuracy));
            }
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_computation_and_expired_entries_are_recomputed() {
        let cache = Arc::new(ResponseCache::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let ask = |ttl: Duration| {
            let (cache, runs) = (cache.clone(), runs.clone());
            tokio::spawn(async move {
                let compute = async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok((Bytes::from_static(b"answer"), ttl))
                };
                cache.get_or_compute("k".into(), compute).await.ok().unwrap()
            })
        };
        let replies: Vec<_> = (0..20).map(|_| ask(Duration::from_millis(200))).collect();
        let mut hits = 0;
        for r in replies {
            let (body, _, hit) = r.await.unwrap();
            assert_eq!(&body[..], b"answer");
            hits += usize::from(hit);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one computation for 20 concurrent requests");
        assert_eq!(hits, 19);
        assert!(ask(Duration::from_millis(200)).await.unwrap().2, "fresh: a hit");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!ask(Duration::from_millis(200)).await.unwrap().2, "expired: computed again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
