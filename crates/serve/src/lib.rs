//! `retrain serve`: trained model files behind HTTP. retrain's own JSON (`/v1`), the KServe v2 /
//! Triton protocol (`/v2`, so the clients written for those servers work, and the same `.onnx`
//! moves to Triton or KServe unchanged), a drag-and-drop page (`/`), health and Prometheus
//! metrics. Concurrent requests are gathered into one ONNX Runtime batch per model
//! ([`batcher`]); decoding runs on a bounded pool beside it.

mod batcher;
mod kserve;
mod listen;
mod metrics;
mod triton;
mod v1;

pub use batcher::Batching;
pub use kserve::{parse as parse_v2, Parsed as ParsedV2};
pub use listen::{raise_fd_limit, Connections, TlsFiles};
pub use metrics::Metrics;
pub use triton::{export as export_triton, Exported, TritonOptions};
pub use v1::read_form;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use batcher::{Batcher, Refused, Row};
use retrain::model::ModelInfo;
use retrain_pixels::{Limits, PixelError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Model(#[from] retrain::Error),
    #[error("{path}: ONNX Runtime cannot open it: {source}")]
    Session { path: PathBuf, source: retrain_features::FeatureError },
    #[error("{a} and {b} would both be served as `{name}` (a model is named by its file stem): rename one")]
    SameName { name: String, a: PathBuf, b: PathBuf },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no model to serve")]
    NoModel,
    #[error("--static {}: not a folder", path.display())]
    Static { path: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("{path}: {what} {name:?} has a line break or control character (or a slash): rename it; the exported files would misread it")]
    Name { path: PathBuf, what: &'static str, name: String },
    #[error("{path}: TLS: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error("--cors {origin:?}: not an origin (scheme://host[:port], or *)")]
    Cors { origin: String },
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// What `retrain serve` is told.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    /// 0: any free port (the one chosen is printed).
    pub port: u16,
    pub batching: Batching,
    /// Largest request body, bytes; larger get 413.
    pub max_body: usize,
    /// A request not answered in this time gets 408.
    pub timeout: Duration,
    /// Images decoded at once.
    pub decoders: usize,
    pub limits: Limits,
    /// Images in one request at most (multipart files, or a v2 tensor's first dimension).
    pub max_images: usize,
    pub connections: Connections,
    /// Every route but `/healthz` and the page wants `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    pub tls: Option<TlsFiles>,
    /// The one origin whose pages may call the API from a browser; none by default.
    pub cors: Option<String>,
    /// Photos of none of the classes: answered `"known": false` (`--reject`).
    pub reject: retrain::model::Reject,
    /// A folder served as static files in place of the page (a `retrain export web` page).
    pub static_dir: Option<PathBuf>,
}

/// How long, and how much, of a refused request's body is read and thrown away before the
/// connection is closed (nginx's lingering close): a client that sends its whole body before
/// reading the answer then reads the 413 or 401, instead of a broken pipe.
const LINGER: Duration = Duration::from_secs(10);
const LINGER_BYTES: u64 = 1 << 30;

/// One served model.
pub struct Model {
    pub name: String,
    pub path: PathBuf,
    pub info: ModelInfo,
    /// The model's outputs and their widths per image, in the graph's order.
    pub outputs: Vec<(String, usize)>,
    /// The `ood_score` above which a photo is none of the classes (`None`: never).
    pub threshold: Option<f32>,
    batcher: Batcher,
    /// Opened on the first `/explain` request (its own ONNX Runtime session, unbatched).
    explainer: std::sync::Mutex<Option<retrain_explain::Explainer>>,
}

impl Model {
    fn crop(&self) -> usize {
        self.info.preprocess.crop as usize
    }
}

struct App {
    models: Vec<Model>,
    metrics: Arc<Metrics>,
    decoders: Semaphore,
    limits: Limits,
    max_body: usize,
    max_images: usize,
    max_batch: usize,
    threads: usize,
    /// SHA-256 of the token: compared in constant time, whatever its length.
    token: Option<[u8; 32]>,
    stopping: AtomicBool,
}

impl App {
    fn model(&self, name: &str) -> Result<&Model, ApiError> {
        self.models.iter().find(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
            ApiError::new(StatusCode::NOT_FOUND, format!("no model `{name}` (served: {})", known.join(", ")))
        })
    }

    /// Decodes an uploaded image and prepares it as the model's training did, on the decode
    /// pool; `name` is what errors call it.
    async fn prepare(&self, model: &Model, bytes: axum::body::Bytes, name: String) -> Result<Vec<u8>, ApiError> {
        let _permit = self.decoders.acquire().await.map_err(|_| ApiError::unavailable("shutting down"))?;
        let (g, limits) = (model.info.geometry(), self.limits);
        tokio::task::spawn_blocking(move || {
            retrain_pixels::decode_for(&bytes, Path::new(&name), g, limits).map(|img| retrain_pixels::prepare(&img, g))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {e}")))?
        .map_err(ApiError::pixels)
    }

    async fn run(&self, model: &Model, pixels: Vec<u8>, n: usize) -> Result<Vec<Row>, ApiError> {
        model.batcher.submit(pixels, n).await.map_err(|r| match r {
            Refused::Full => ApiError::unavailable("the queue is full: retry shortly"),
            Refused::Stopped => ApiError::unavailable("shutting down"),
            Refused::Failed(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("ONNX Runtime: {e}")),
        })
    }
}

type Shared = Arc<App>;

/// An answer other than 2xx: `{"error": message}`, as KServe servers write it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unavailable(message: &str) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// Too many pixels is the client's image being too large (413); anything else unreadable
    /// is a bad request.
    fn pixels(e: PixelError) -> Self {
        let status = match e {
            PixelError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }

    /// An extractor's refusal (body too large, bad JSON), with its status.
    fn rejected(r: impl IntoResponse) -> Self {
        let r = r.into_response();
        let status = r.status();
        let message = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "request body too large (--max-body)".to_string(),
            s => format!("bad request ({s})"),
        };
        Self::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Opens the models (each with its batching thread and a warm-up batch), listens, calls
/// `listening` with the address, and serves until SIGTERM or Ctrl-C; then stops accepting,
/// answers what is in flight and returns.
pub fn serve(paths: &[PathBuf], cfg: Config, listening: impl FnOnce(SocketAddr)) -> Result<()> {
    if paths.is_empty() && cfg.static_dir.is_none() {
        return Err(ServeError::NoModel);
    }
    if let Some(d) = cfg.static_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(ServeError::Static { path: d.clone() });
    }
    let tls = cfg.tls.as_ref().map(|t| listen::tls_acceptor(&t.cert, &t.key)).transpose()?;
    let cors = cfg.cors.as_deref().map(cors_layer).transpose()?;
    let metrics = Arc::new(Metrics::new());
    let mut models: Vec<Model> = Vec::new();
    for path in paths {
        let (bytes, info) = retrain::model::read(path)?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
        if let Some(other) = models.iter().find(|m| m.name == name) {
            return Err(ServeError::SameName { name, a: other.path.clone(), b: path.clone() });
        }
        let crop = info.preprocess.crop as usize;
        let threshold = retrain::model::threshold(&info, path, cfg.reject)?;
        let batcher = Batcher::start(bytes, name.clone(), crop, cfg.batching, metrics.clone())
            .map_err(|source| ServeError::Session { path: path.clone(), source })?;
        models.push(Model {
            name,
            path: path.clone(),
            info,
            outputs: Vec::new(),
            threshold,
            batcher,
            explainer: std::sync::Mutex::new(None),
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        // One grey image per model: the session warms up and tells its outputs' widths.
        for m in &mut models {
            let crop = m.crop();
            let rows = m.batcher.submit(vec![128; crop * crop * 3], 1).await.map_err(|e| ServeError::Session {
                path: m.path.clone(),
                source: retrain_features::FeatureError::Ort { what: m.name.clone(), reason: format!("{e:?}") },
            })?;
            let mut outputs: Vec<(String, usize)> = rows[0].iter().map(|(k, v)| (k.clone(), v.len())).collect();
            outputs.sort_by_key(|(k, _)| {
                ["probabilities", "ood_score", "logits", "features"].iter().position(|o| o == k).unwrap_or(9)
            });
            m.outputs = outputs;
        }
        let app = Arc::new(App {
            models,
            metrics: metrics.clone(),
            decoders: Semaphore::new(cfg.decoders.max(1)),
            limits: cfg.limits,
            max_body: cfg.max_body,
            max_images: cfg.max_images.max(1),
            max_batch: cfg.batching.max_batch.max(1),
            threads: cfg.batching.threads,
            token: cfg.token.as_deref().map(digest),
            stopping: AtomicBool::new(false),
        });
        let mut router = routes(app.clone(), &cfg);
        if let Some(cors) = cors {
            router = router.layer(cors);
        }
        listen::raise_fd_limit();
        let addr = format!("{}:{}", cfg.host, cfg.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        let signalled = shutdown_signal()?;
        listening(listener.local_addr()?);
        let stop = app.clone();
        listen::serve(listener, router, cfg.connections.clone(), tls, async move {
            signalled.await;
            stop.stopping.store(true, Ordering::SeqCst);
        })
        .await;
        // The last handle: dropping it closes the queues and joins the model threads.
        drop(app);
        Ok(())
    })
}

fn routes(app: Shared, cfg: &Config) -> Router {
    let router = match &cfg.static_dir {
        None => Router::new()
            .route("/", get(v1::page))
            .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") }),
        Some(dir) => Router::new()
            .fallback_service(tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true))
            .layer(axum::middleware::map_response(static_headers)),
    };
    router
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(v1::models))
        .route("/v1/predict", post(v1::predict_default))
        .route("/v1/models/{name}/predict", post(v1::predict_named))
        .route("/v1/explain", post(v1::explain_default))
        .route("/v1/models/{name}/explain", post(v1::explain_named))
        .route("/v2", get(kserve::server))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{name}", get(kserve::metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready))
        .route("/v2/models/{name}/infer", post(kserve::infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(kserve::infer_version))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.timeout))
        .layer(DefaultBodyLimit::max(cfg.max_body))
        .layer(axum::middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Static files get the headers of cross-origin isolation (ONNX Runtime Web's threads need
/// SharedArrayBuffer), no MIME sniffing, and revalidation (a new export is seen at once).
async fn static_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-embedder-policy", HeaderValue::from_static("require-corp"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn metrics_text(State(app): State<Shared>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render())
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn cors_layer(origin: &str) -> Result<tower_http::cors::CorsLayer> {
    use axum::http::Method;
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origin == "*" {
        AllowOrigin::any()
    } else {
        let ok = (origin.starts_with("http://") || origin.starts_with("https://")) && !origin.ends_with('/');
        let value = HeaderValue::from_str(origin).ok().filter(|_| ok);
        // Only that origin is answered with it (`exact` would name it to every origin).
        let allowed = value.ok_or_else(|| ServeError::Cors { origin: origin.to_string() })?;
        AllowOrigin::predicate(move |given, _| given == allowed)
    };
    Ok(CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, HeaderName::from_static(kserve::HEADER_LENGTH)])
        .expose_headers([HeaderName::from_static(kserve::HEADER_LENGTH)]))
}

/// Whether the request carries the token (always, when none is set). `/healthz` and the page
/// itself (static, no data; it asks for the token) are open.
fn authorised(app: &App, req: &Request) -> bool {
    let Some(want) = &app.token else { return true };
    if req.uri().path() == "/healthz" || (req.uri().path() == "/" && req.method() == axum::http::Method::GET) {
        return true;
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = given.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    use subtle::ConstantTimeEq;
    given.is_some() && bool::from(digest(token).ct_eq(want))
}

/// Answers `e` before reading the body, then reads and throws the body away for a bounded time
/// and size (see [`LINGER`]) and closes the connection.
fn refuse_unread(req: Request, e: ApiError) -> Response {
    tokio::spawn(drain(req.into_body(), LINGER_BYTES));
    let mut r = e.into_response();
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Reads a body to its end, or to `limit` bytes, or for [`LINGER`], keeping none of it.
pub(crate) async fn drain(mut body: axum::body::Body, limit: u64) {
    use http_body_util::BodyExt;
    let mut read = 0u64;
    let _ = tokio::time::timeout(LINGER, async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > limit {
                break;
            }
        }
    })
    .await;
}

/// Refuses a request without the token (401) and a body whose Content-Length is over
/// `--max-body` (413), both before reading the body; turns the timeout's bare 408 into a JSON
/// reason, and counts every request by its route pattern and status, with its latency.
async fn track(State(app): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    app.metrics.in_flight.inc();
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let r = match declared {
        _ if !authorised(&app, &req) => {
            let e =
                ApiError::new(StatusCode::UNAUTHORIZED, "this server wants `Authorization: Bearer TOKEN` (--token)");
            let mut r = refuse_unread(req, e);
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        Some(n) if n > app.max_body as u64 => {
            refuse_unread(req, ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large (--max-body)"))
        }
        _ => match next.run(req).await {
            r if r.status() == StatusCode::REQUEST_TIMEOUT => {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "not answered within --timeout").into_response()
            }
            r => r,
        },
    };
    app.metrics.in_flight.dec();
    app.metrics.request(&route, r.status().as_u16(), started.elapsed());
    r
}

/// SIGTERM and Ctrl-C, their handlers installed now (before the address is printed, so a
/// signal sent as soon as it is seen stops the server gracefully rather than killing it).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
