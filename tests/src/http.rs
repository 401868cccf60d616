//! Request-scoped context in a real HTTP service: an axum (or plain hyper) server whose
//! handlers read the request's user and id at every hop, and a client that drives it
//! over loopback and checks each echo. Shared by `tests/http.rs` and the demo
//! (`cargo run -p ctx-tests --release --example http`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use ctx_tokio::JoinSetExt;
use ctx_vars::{ContextLayer, context_var};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The signed-in user, from the `x-user` header.
#[context_var]
pub static USER: String;

/// The request id, from the `x-request-id` header.
#[context_var(name = "request.id")]
pub static REQUEST_ID: u64;

/// Where a handler reads the request's values: the hops of one request. The last is
/// read by the response body, as the server streams it after the handler returned.
pub const HOPS: [&str; 7] = [
    "entry",
    "after_await",
    "spawned",
    "blocking",
    "join_set",
    "db",
    "body",
];

/// Sets the request's variables from its headers: the layer's hook.
pub fn from_headers(request: &Request) {
    let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(user) = header("x-user") {
        USER.set(user.to_owned());
    }
    if let Some(id) = header("x-request-id").and_then(|id| id.parse().ok()) {
        REQUEST_ID.set(id);
    }
}

fn seen() -> String {
    format!(
        "{}/{}",
        USER.get().unwrap_or_default(),
        REQUEST_ID.get().unwrap_or_default()
    )
}

/// A database call, simulated: it awaits, then reads who is asking. Every thousandth
/// request logs it: a log line carries the request's values without being handed them
/// (with ctx-tracing installed, as in the demo).
async fn db_query() -> String {
    tokio::task::yield_now().await;
    if REQUEST_ID.get().is_some_and(|id| id % 1000 == 0) {
        tracing::info!(target: "db", "sampled query");
    }
    seen()
}

/// Reads the values at every hop and echoes them, one line per hop; the last line is
/// made by the body stream, after the handler has returned.
async fn handler() -> Body {
    let entry = seen();
    tokio::time::sleep(Duration::from_micros(50)).await;
    let after_await = seen();
    let spawned = ctx_tokio::spawn(async { seen() }).await.unwrap();
    let blocking = ctx_tokio::spawn_blocking(seen).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    set.ctx_spawn(async { seen() });
    let join_set = set.join_next().await.unwrap().unwrap();
    let db = db_query().await;
    let lines = [entry, after_await, spawned, blocking, join_set, db].join("\n");
    Body::from_stream(LateChunks {
        first: Some(lines),
        late: 1,
    })
}

/// A streaming body: `first`, then `late` chunks that read the request's values when
/// the server polls them.
struct LateChunks {
    first: Option<String>,
    late: usize,
}

impl futures_core::Stream for LateChunks {
    type Item = Result<String, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if self.late == 0 {
            return Poll::Ready(None);
        }
        self.late -= 1;
        Poll::Ready(Some(Ok(format!("\n{}", seen()))))
    }
}

/// `/login?` sets the user itself; `/whoami` only reads it. Without the layer, the
/// first leaks into the second through the worker thread's own context.
async fn login(request: Request) -> String {
    let user = request.uri().query().unwrap_or_default().to_owned();
    USER.set(user);
    seen()
}

async fn whoami() -> String {
    seen()
}

/// The application: with `layered`, every request runs in its own context, seeded from
/// its headers.
pub fn app(layered: bool) -> Router {
    let router = Router::new()
        .route("/", get(handler))
        .route("/login", get(login))
        .route("/whoami", get(whoami));
    if layered {
        router.layer(ContextLayer::new().on_request(from_headers))
    } else {
        router
    }
}

/// Serves `app(layered)` with axum until the task is dropped.
pub async fn serve_axum(listener: TcpListener, layered: bool) {
    axum::serve(listener, app(layered))
        .await
        .expect("axum serves");
}

/// Serves the same application with plain hyper (`hyper-util`'s connection builder),
/// one raw `tokio::spawn` per connection, as hyper's own examples do.
pub async fn serve_hyper(listener: TcpListener, layered: bool) {
    let service = hyper_util::service::TowerToHyperService::new(app(layered));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests answered.
    pub requests: usize,
    /// Hop values compared with what the request sent.
    pub hops_checked: usize,
    /// Hop values that were not the request's own.
    pub mismatches: usize,
    /// Requests that failed outright.
    pub failures: usize,
    /// Each answered request's latency.
    pub latencies: Vec<Duration>,
}

impl Report {
    /// The latency below which `fraction` of the requests fell.
    pub fn percentile(&self, fraction: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let at =
            ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(at).copied().unwrap_or_default()
    }
}

/// An HTTP/1 client for the tests and the demo.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `path` from `addr` with the given user and request id, returning the body.
///
/// # Errors
///
/// The transport's error, or the status and body of a response that is not a success.
pub async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    who: Option<(&str, u64)>,
) -> Result<String, String> {
    let mut request = hyper::Request::get(format!("http://{addr}{path}"));
    if let Some((user, id)) = who {
        request = request
            .header("x-user", user)
            .header("x-request-id", id.to_string());
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Sends `requests` requests to `addr`, `in_flight` at a time, each as its own user and
/// request id, and checks every hop's echo against what it sent.
pub async fn drive(addr: SocketAddr, requests: usize, in_flight: usize) -> Report {
    let client = client();
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..requests {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("semaphore open");
        let client = client.clone();
        set.spawn(async move {
            let _permit = permit;
            let (user, id) = (format!("user-{i}"), 1_000_000 + i as u64);
            let start = Instant::now();
            let body = fetch(&client, addr, "/", Some((&user, id))).await;
            (body, format!("{user}/{id}"), start.elapsed())
        });
    }
    let mut report = Report::default();
    while let Some(joined) = set.join_next().await {
        let (body, expected, latency) = joined.expect("client task");
        match body {
            Ok(body) => {
                report.requests += 1;
                report.latencies.push(latency);
                let hops: Vec<&str> = body.lines().collect();
                report.hops_checked += HOPS.len();
                report.mismatches += HOPS.len()
                    - hops
                        .iter()
                        .filter(|hop| **hop == expected)
                        .count()
                        .min(HOPS.len());
            }
            Err(_) => report.failures += 1,
        }
    }
    report
}

/// Binds a listener on loopback, on a port the system picks.
pub async fn loopback() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}
