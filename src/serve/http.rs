//! The HTTP listener: OTLP/HTTP `POST /v1/traces`, and the query API.
//!
//! One handler dispatches on method and path, so that authentication, size limits, errors and
//! latency metrics are the same for every route.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use augur_ingest::live::Encoding;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use serde::Deserialize;

use super::grpc::RETRY_AFTER_SECS;
use super::live::{Live, Refusal};

/// Largest body of an API request (JSON queries are small).
const MAX_API_BODY: usize = 1 << 20;

/// Longest a request body may take to arrive: a client that sends a few bytes now and then
/// (or none) is answered 408 and its connection freed, rather than held for ever.
const BODY_SECONDS: u64 = 60;

/// Shared by every request.
pub struct App {
    pub live: Arc<Live>,
    pub token: Option<Arc<String>>,
    pub intents: Option<String>,
    /// The experiment ledger (STATE/model.ledger.jsonl), written by `POST /api/outcome` and
    /// `augur outcome --ledger`.
    pub ledger: std::path::PathBuf,
    pub max_body: usize,
    pub latency: Mutex<BTreeMap<&'static str, Histogram>>,
}

/// Request latency, Prometheus-style cumulative buckets.
#[derive(Default, Clone)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

const BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (c, le) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

type Reply = Response<Body>;

pub async fn handle(State(app): State<Arc<App>>, req: Request<Body>) -> Reply {
    let started = Instant::now();
    let route = route_name(req.method(), req.uri().path());
    let reply = dispatch(&app, route, req).await;
    let mut latency = app.latency.lock().unwrap_or_else(|p| p.into_inner());
    latency
        .entry(route)
        .or_default()
        .observe(started.elapsed().as_secs_f64());
    reply
}

fn route_name(method: &Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/v1/traces") => "/v1/traces",
        ("GET", "/api/graph") => "/api/graph",
        ("POST", "/api/simulate") => "/api/simulate",
        ("GET", "/api/recommendations") => "/api/recommendations",
        ("POST", "/api/value") => "/api/value",
        ("GET", "/api/ledger") => "/api/ledger",
        ("GET", "/api/experiments") => "/api/experiments",
        ("POST", "/api/outcome") => "/api/outcome",
        ("GET", "/healthz") => "/healthz",
        ("GET", "/metrics") => "/metrics",
        (_, "/v1/traces" | "/api/graph" | "/api/simulate" | "/api/recommendations")
        | (_, "/api/value" | "/api/ledger" | "/healthz" | "/metrics")
        | (_, "/api/experiments" | "/api/outcome") => "method not allowed",
        _ => "not found",
    }
}

async fn dispatch(app: &Arc<App>, route: &'static str, req: Request<Body>) -> Reply {
    if route == "/healthz" {
        return json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ok",
                "uptime_s": app.live.started.elapsed().as_secs_f64(),
            }),
        );
    }
    if let Some(token) = &app.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !super::bearer_matches(given, token) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    let query = req.uri().query().unwrap_or("").to_string();
    match route {
        "/v1/traces" => traces(app, req).await,
        "/metrics" => text(StatusCode::OK, metrics(app)),
        "/api/graph" => {
            let published = app.live.published();
            json(StatusCode::OK, &published.model.graph())
        }
        "/api/simulate" => match body(req, MAX_API_BODY).await {
            Ok(b) => blocking(app, move |app| simulate(app, &b)).await,
            Err(r) => r,
        },
        "/api/recommendations" => blocking(app, move |app| recommendations(app, &query)).await,
        "/api/value" => match body(req, MAX_API_BODY).await {
            Ok(b) => blocking(app, move |app| value(app, &b)).await,
            Err(r) => r,
        },
        "/api/ledger" => blocking(app, ledger).await,
        "/api/experiments" => json(
            StatusCode::OK,
            &serde_json::json!({ "experiments": app.live.published().experiments }),
        ),
        "/api/outcome" => match body(req, MAX_API_BODY).await {
            Ok(b) => blocking(app, move |app| outcome(app, &b)).await,
            Err(r) => r,
        },
        "method not allowed" => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: POST /v1/traces, /api/simulate, /api/value and /api/outcome; GET the others",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not found; routes: POST /v1/traces, GET /api/graph, POST /api/simulate, GET /api/recommendations?top=K&scope=service|operation|edge, POST /api/value, GET /api/experiments, POST /api/outcome, GET /api/ledger, GET /healthz, GET /metrics",
        ),
    }
}

/// Runs CPU-heavy work (simulation) off the async threads.
async fn blocking(app: &Arc<App>, f: impl FnOnce(&App) -> Reply + Send + 'static) -> Reply {
    let app = Arc::clone(app);
    match tokio::task::spawn_blocking(move || f(&app)).await {
        Ok(r) => r,
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the handler failed: {e}"),
        ),
    }
}

async fn body(req: Request<Body>, limit: usize) -> Result<Bytes, Reply> {
    let read = axum::body::to_bytes(req.into_body(), limit);
    match tokio::time::timeout(std::time::Duration::from_secs(BODY_SECONDS), read).await {
        Ok(read) => read.map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("could not read the request body ({e}); the limit is {limit} bytes"),
            )
        }),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            &format!("the request body did not arrive within {BODY_SECONDS} s"),
        )),
    }
}

async fn traces(app: &Arc<App>, req: Request<Body>) -> Reply {
    let headers = req.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match content_type.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("content type `{other}` is not OTLP: send application/x-protobuf or application/json"),
            )
        }
    };
    let raw = match body(req, app.max_body).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::REQUEST_TIMEOUT => return r,
        Err(_) => {
            return otlp_error(
                encoding,
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request is larger than {} bytes (--max-message-bytes)",
                    app.max_body
                ),
            )
        }
    };
    let body = match decompress(&headers, raw, app.max_body) {
        Ok(b) => b,
        Err((status, m)) => {
            if status == StatusCode::BAD_REQUEST {
                // A body that does not decompress is not an OTLP request either.
                app.live
                    .counters
                    .requests_invalid
                    .fetch_add(1, Ordering::Relaxed);
            }
            return otlp_error(encoding, status, &m);
        }
    };
    let live = Arc::clone(&app.live);
    let answer = tokio::task::spawn_blocking(move || live.accept(&body, encoding)).await;
    match answer {
        Ok(Ok(a)) => {
            let partial = (a.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: a.rejected as i64,
                error_message: a.first_problem.unwrap_or_default(),
            });
            match encoding {
                Encoding::Protobuf => {
                    let bytes = ExportTraceServiceResponse {
                        partial_success: partial,
                    }
                    .encode_to_vec();
                    with_type(StatusCode::OK, "application/x-protobuf", bytes)
                }
                Encoding::Json => {
                    let v = match partial {
                        Some(p) => serde_json::json!({"partialSuccess": {
                            "rejectedSpans": p.rejected_spans.to_string(),
                            "errorMessage": p.error_message,
                        }}),
                        None => serde_json::json!({}),
                    };
                    json(StatusCode::OK, &v)
                }
            }
        }
        Ok(Err(Refusal::Invalid(m))) => otlp_error(encoding, StatusCode::BAD_REQUEST, &m),
        Ok(Err(Refusal::Busy { queued, limit })) => {
            let mut r = otlp_error(
                encoding,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("augur is busy: {queued} spans queued (limit {limit}, --queue-spans); retry later"),
            );
            r.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(RETRY_AFTER_SECS),
            );
            r
        }
        Ok(Err(Refusal::Failed(m))) => otlp_error(encoding, StatusCode::INTERNAL_SERVER_ERROR, &m),
        Err(e) => otlp_error(
            encoding,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the request handler failed: {e}"),
        ),
    }
}

/// Undoes `Content-Encoding: gzip`, never expanding past `limit` bytes.
fn decompress(
    headers: &HeaderMap,
    raw: Bytes,
    limit: usize,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "" | "identity" => Ok(raw.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("the gzip body does not decompress: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the request decompresses to more than {limit} bytes (--max-message-bytes)"
                    ),
                ));
            }
            Ok(out)
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content encoding `{other}` is not supported: send gzip or none"),
        )),
    }
}

/// An OTLP/HTTP error: a `google.rpc.Status` in the request's encoding.
fn otlp_error(encoding: Encoding, status: StatusCode, message: &str) -> Reply {
    match encoding {
        Encoding::Json => json(
            status,
            &serde_json::json!({"code": grpc_code(status), "message": message}),
        ),
        Encoding::Protobuf => {
            let mut b = Vec::new();
            encode_key(1, WireType::Varint, &mut b);
            encode_varint(grpc_code(status), &mut b);
            encode_key(2, WireType::LengthDelimited, &mut b);
            encode_varint(message.len() as u64, &mut b);
            b.extend_from_slice(message.as_bytes());
            with_type(status, "application/x-protobuf", b)
        }
    }
}

fn grpc_code(status: StatusCode) -> u64 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        StatusCode::UNAUTHORIZED => 16,
        _ => 13,
    }
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(mut b) => {
            b.push(b'\n');
            with_type(status, "application/json", b)
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Reply {
    with_type(status, "text/plain; version=0.0.4", body.into_bytes())
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

/// Options a query may set, as on the command line.
#[derive(Default)]
struct QueryOptions {
    requests: Option<usize>,
    samples: Option<usize>,
    seed: Option<u64>,
    /// Minutes.
    duration: Option<f64>,
    error_budget: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateBody {
    faults: Vec<String>,
    requests: Option<usize>,
    samples: Option<usize>,
    seed: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueBody {
    fault: String,
    requests: Option<usize>,
    samples: Option<usize>,
    seed: Option<u64>,
    duration: Option<f64>,
    error_budget: Option<f64>,
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Box<Reply>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not {shape}: {e}"),
        ))
    })
}

fn sim_error(e: &augur_simulator::SimError) -> Reply {
    let status = match e {
        augur_simulator::SimError::NoTraffic => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, &e.to_string())
}

fn rec_error(e: &augur_recommender::RecError) -> Reply {
    match e {
        augur_recommender::RecError::Sim(s) => sim_error(s),
        other => error(StatusCode::UNPROCESSABLE_ENTITY, &other.to_string()),
    }
}

fn simulate(app: &App, body: &[u8]) -> Reply {
    let b: SimulateBody = match parse_json(
        body,
        r#"{"faults":["SPEC",..],"requests":N,"samples":K,"seed":S}"#,
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if b.faults.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "give at least one fault in `faults`",
        );
    }
    let specs = match b
        .faults
        .iter()
        .map(|f| f.parse::<augur_simulator::FaultSpec>())
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(s) => s,
        Err(e) => return sim_error(&e),
    };
    let opts = augur_simulator::SimOptions {
        requests: b.requests.unwrap_or(10_000),
        samples: b.samples.unwrap_or(64),
        seed: b.seed.unwrap_or(1),
    };
    if let Err(m) = crate::check_sim_options(opts.requests, opts.samples) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let published = app.live.published();
    match augur_simulator::simulate(&published.view, &specs, &opts) {
        Ok((p, _)) => json(StatusCode::OK, &p),
        Err(e) => sim_error(&e),
    }
}

fn intents(
    app: &App,
    view: &augur_model::View,
) -> Result<Vec<augur_recommender::Intent>, Box<Reply>> {
    match &app.intents {
        None => Ok(Vec::new()),
        Some(text) => augur_recommender::intents::parse(text, view).map_err(|m| {
            Box::new(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("the intents file (--intents) does not fit the model learned so far: {m}"),
            ))
        }),
    }
}

fn options(
    q: &QueryOptions,
    scope: crate::ScopeArg,
) -> Result<augur_recommender::Options, Box<Reply>> {
    crate::experiment_options(
        scope,
        q.duration.unwrap_or(10.0),
        q.requests.unwrap_or(2_000),
        q.samples.unwrap_or(32),
        q.seed.unwrap_or(1),
        q.error_budget,
    )
    .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, &format!("{e:#}"))))
}

fn recommendations(app: &App, query: &str) -> Reply {
    let mut top = 10usize;
    let mut scope = crate::ScopeArg::Service;
    let mut q = QueryOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&k) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("query parameter `{k}` is given twice"),
            );
        }
        seen.push(k);
        let bad = |what: &str| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("query parameter `{k}`: `{v}` is not {what}"),
            )
        };
        match k {
            "top" => match v.parse() {
                Ok(0) => return bad("a count of at least 1 (as for `augur recommend --top`)"),
                Ok(n) => top = n,
                Err(_) => return bad("a count"),
            },
            "scope" => {
                scope = match v {
                    "service" => crate::ScopeArg::Service,
                    "operation" => crate::ScopeArg::Operation,
                    "edge" => crate::ScopeArg::Edge,
                    _ => return bad("service, operation or edge"),
                }
            }
            "requests" | "samples" => match v.parse() {
                Ok(n) => {
                    if k == "requests" {
                        q.requests = Some(n)
                    } else {
                        q.samples = Some(n)
                    }
                }
                Err(_) => return bad("a count"),
            },
            "seed" => match v.parse() {
                Ok(n) => q.seed = Some(n),
                Err(_) => return bad("a number"),
            },
            "duration" | "error_budget" => match v.parse::<f64>() {
                Ok(x) => {
                    if k == "duration" {
                        q.duration = Some(x)
                    } else {
                        q.error_budget = Some(x)
                    }
                }
                Err(_) => return bad("a number"),
            },
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown query parameter `{k}`; known: top, scope, duration, error_budget, requests, samples, seed"),
                )
            }
        }
    }
    let mut opts = match options(&q, scope) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let published = app.live.published();
    opts.staleness = staleness(app, &published);
    let intents = match intents(app, &published.view) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match augur_recommender::recommend::recommend(&published.view, &intents, &opts) {
        Ok(mut rec) => {
            rec.experiments.truncate(top);
            json(StatusCode::OK, &rec)
        }
        Err(e) => rec_error(&e),
    }
}

fn value(app: &App, body: &[u8]) -> Reply {
    let b: ValueBody = match parse_json(
        body,
        r#"{"fault":"SPEC","duration":MINUTES,"error_budget":REQUESTS,..}"#,
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let q = QueryOptions {
        requests: b.requests,
        samples: b.samples,
        seed: b.seed,
        duration: b.duration,
        error_budget: b.error_budget,
    };
    let mut opts = match options(&q, crate::ScopeArg::Service) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let spec: augur_simulator::FaultSpec = match b.fault.parse() {
        Ok(s) => s,
        Err(e) => return sim_error(&e),
    };
    let published = app.live.published();
    opts.staleness = staleness(app, &published);
    let intents = match intents(app, &published.view) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match augur_recommender::value_of(&published.view, &intents, &spec, &opts) {
        Ok(e) => json(StatusCode::OK, &e),
        Err(e) => rec_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    fault: String,
    traffic_share: Option<f64>,
    requests: Option<usize>,
    samples: Option<usize>,
    seed: Option<u64>,
}

/// Records an experiment's outcome from the traces the server received during it (those whose
/// spans name it in `augur.experiment`): the `augur outcome --json` report.
fn outcome(app: &App, body: &[u8]) -> Reply {
    let b: OutcomeBody = match parse_json(
        body,
        r#"{"fault":"SPEC","traffic_share":S,"requests":N,"samples":K,"seed":S}"#,
    ) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let share = b.traffic_share.unwrap_or(1.0);
    if !(share > 0.0 && share <= 1.0) {
        return error(
            StatusCode::BAD_REQUEST,
            "traffic_share is a share of traffic, above 0 and at most 1",
        );
    }
    // The defaults of `augur outcome`.
    let sim = augur_simulator::SimOptions {
        requests: b.requests.unwrap_or(4_000),
        samples: b.samples.unwrap_or(32),
        seed: b.seed.unwrap_or(1),
    };
    if let Err(m) = crate::check_sim_options(sim.requests, sim.samples) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let spec: augur_simulator::FaultSpec = match b.fault.parse() {
        Ok(s) => s,
        Err(e) => return sim_error(&e),
    };
    let published = app.live.published();
    let intents = match intents(app, &published.view) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    drop(published);
    let opts = augur_recommender::outcome::OutcomeOptions {
        sim,
        traffic_share: share,
    };
    use super::live::OutcomeRefusal;
    match app.live.record_outcome(spec, intents, opts) {
        Ok(report) => json(StatusCode::OK, &report),
        Err(OutcomeRefusal::NoTraces(m)) => error(StatusCode::NOT_FOUND, &m),
        Err(OutcomeRefusal::Invalid(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, &m),
        Err(OutcomeRefusal::Failed(m)) => error(StatusCode::INTERNAL_SERVER_ERROR, &m),
    }
}

/// The ledger's entries, as `augur ledger --json` prints them.
fn ledger(app: &App) -> Reply {
    match augur_recommender::ledger::read(&app.ledger) {
        Ok(entries) => json(StatusCode::OK, &crate::outcome::ledger_json(&entries)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The staleness of tested targets, from the ledger (none when it cannot be read: logged).
fn staleness(
    app: &App,
    published: &super::live::Published,
) -> std::collections::BTreeMap<String, augur_recommender::ledger::Staleness> {
    match augur_recommender::ledger::read(&app.ledger) {
        Ok(entries) if !entries.is_empty() => augur_recommender::ledger::staleness_by_target(
            &published.model,
            &published.view,
            &entries,
        ),
        Ok(_) => Default::default(),
        Err(e) => {
            tracing::warn!(error = %e, "the ledger cannot be read; recommending without staleness");
            Default::default()
        }
    }
}

fn metrics(app: &App) -> String {
    let c = &app.live.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "augur_spans_received_total",
        "counter",
        "Spans accepted over OTLP (logged durably, then acknowledged).",
        get(&c.spans_accepted).to_string(),
    );
    metric(
        "augur_spans_rejected_total",
        "counter",
        "Spans rejected as invalid (reported to the client as partial success).",
        get(&c.spans_rejected).to_string(),
    );
    metric(
        "augur_export_requests_total",
        "counter",
        "Export requests accepted.",
        get(&c.requests_accepted).to_string(),
    );
    metric(
        "augur_export_requests_refused_total",
        "counter",
        "Export requests refused because the queue was full (retryable).",
        get(&c.requests_refused).to_string(),
    );
    metric(
        "augur_export_requests_invalid_total",
        "counter",
        "Export requests that were not OTLP trace requests.",
        get(&c.requests_invalid).to_string(),
    );
    metric(
        "augur_queue_spans",
        "gauge",
        "Spans accepted but not yet applied to the model and lake.",
        get(&c.queued_spans).to_string(),
    );
    metric(
        "augur_queue_limit_spans",
        "gauge",
        "Queue limit (--queue-spans).",
        app.live.opts.queue_spans.to_string(),
    );
    metric(
        "augur_model_spans",
        "gauge",
        "Spans in the model the API answers from.",
        get(&c.model_spans).to_string(),
    );
    metric(
        "augur_model_operations",
        "gauge",
        "Operations in the model.",
        get(&c.model_operations).to_string(),
    );
    metric(
        "augur_model_call_sites",
        "gauge",
        "Call sites in the model.",
        get(&c.model_call_sites).to_string(),
    );
    metric(
        "augur_snapshots_total",
        "counter",
        "Model snapshots written.",
        get(&c.snapshots).to_string(),
    );
    metric(
        "augur_uptime_seconds",
        "gauge",
        "Seconds since start.",
        format!("{:.3}", app.live.started.elapsed().as_secs_f64()),
    );
    let latency = app
        .latency
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    out.push_str("# HELP augur_http_request_duration_seconds HTTP request latency by route.\n# TYPE augur_http_request_duration_seconds histogram\n");
    for (route, h) in latency {
        for (le, n) in BUCKETS.iter().zip(h.counts) {
            out.push_str(&format!(
                "augur_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "augur_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n",
            h.count
        ));
        out.push_str(&format!(
            "augur_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n",
            h.sum
        ));
        out.push_str(&format!(
            "augur_http_request_duration_seconds_count{{route=\"{route}\"}} {}\n",
            h.count
        ));
    }
    out
}
