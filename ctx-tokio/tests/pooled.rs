//! Tasks a library spawns during one request and reuses for later ones (a pooled HTTP
//! connection, a database driver started on first use), under `TaskHooks::inherit`:
//! they show a request's values only while that request is in flight, never after, and
//! let go of them when it ends.
//!
//! Two services over loopback, gateway → billing, both behind `ContextLayer`, on one
//! hooked runtime. The gateway calls billing through hyper-util's legacy client with
//! its stock `TokioExecutor` (pooled HTTP/1 connections, whose tasks log every write);
//! billing queries a fake database whose driver task is spawned with plain
//! `tokio::spawn` on first use. Every line goes through ctx-tracing's JSON formatter and
//! is parsed.

#![cfg(all(feature = "hooks", tokio_unstable))]

use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context as TaskContext, Poll};

use ctx_tokio::hooks::{self, TaskHooks};
use ctx_tokio::{Context, ContextVar};
use ctx_tracing::ContextFields;
use ctx_vars::ContextLayer;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
/// Dropped when the last context holding a request's values goes.
static PROBE: ContextVar<Probe> = ContextVar::new("probe");

const REQUESTS: u64 = 1_000;
const IN_FLIGHT: u64 = 32;

/// Counts its drops: a request's values still held by a task after the request ended
/// keep their probe alive.
struct Probe;
static PROBES_DROPPED: AtomicUsize = AtomicUsize::new(0);
impl Drop for Probe {
    fn drop(&mut self) {
        PROBES_DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

/// Numbers the polls of every task, in one order across threads.
static SEQ: AtomicU64 = AtomicU64::new(1);
thread_local! {
    /// The poll under way on this thread, as numbered by the test's `before_poll` hook.
    static POLL: Cell<u64> = const { Cell::new(0) };
}

/// What the hooks' `before_poll` saw of a poll that started in a task context holding
/// a request id: the id, and whether that request had ended already.
#[derive(Default)]
struct Polls(Mutex<HashMap<u64, (u64, bool)>>);

fn polls() -> &'static Polls {
    static POLLS: OnceLock<Polls> = OnceLock::new();
    POLLS.get_or_init(Polls::default)
}

/// The user hook: runs after ctx's, in the task's context, as the poll starts.
fn before_poll() {
    let poll = SEQ.fetch_add(1, Ordering::SeqCst);
    POLL.set(poll);
    if let Some(id) = REQUEST_ID.get() {
        // After the number is taken: an end that came before it is seen here.
        let ended = Context::current().is_ended();
        polls().0.lock().unwrap().insert(poll, (id, ended));
    }
}

/// Where the lines go.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let fields = ContextFields::new().display(&REQUEST_ID);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(capture.clone())
            .map_event_format(|format| fields.wrap(format))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        capture
    })
}

/// A database client that starts its driver task on first use, with plain
/// `tokio::spawn`, and sends every later query to it: as tokio-postgres, deadpool or
/// sqlx do.
mod database {
    use super::*;

    type Query = (u64, oneshot::Sender<u64>);

    #[derive(Default)]
    pub(crate) struct Db(Mutex<Option<mpsc::UnboundedSender<Query>>>);

    impl Db {
        pub(crate) async fn query(&self, for_request: u64) -> u64 {
            let (reply, answer) = oneshot::channel();
            let sender = self
                .0
                .lock()
                .unwrap()
                .get_or_insert_with(|| {
                    let (sender, queries) = mpsc::unbounded_channel();
                    tokio::spawn(driver(queries));
                    sender
                })
                .clone();
            sender.send((for_request, reply)).expect("driver");
            answer.await.expect("driver answers")
        }
    }

    async fn driver(mut queries: mpsc::UnboundedReceiver<Query>) {
        while let Some((for_request, reply)) = queries.recv().await {
            tracing::info!(site = "driver", for_request, poll = POLL.get());
            let _ = reply.send(for_request);
        }
    }
}

/// A stream that logs each write from the connection task that polls it.
struct Logged(TokioIo<TcpStream>);

impl Read for Logged {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Logged {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // The request this write carries, from its header.
        let text = String::from_utf8_lossy(buf);
        let serves = text
            .split("x-request-id: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next()?.parse::<u64>().ok());
        tracing::info!(site = "connection", serves, poll = POLL.get());
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for Logged {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Connects to one address, logging each connection it opens.
#[derive(Clone)]
struct Connector(SocketAddr);

impl tower_service::Service<Uri> for Connector {
    type Response = Logged;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Logged>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.0;
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            tracing::info!(site = "connect", poll = POLL.get());
            Ok(Logged(TokioIo::new(stream)))
        })
    }
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// A tower service around an async handler.
#[derive(Clone)]
struct Service(Handler);

impl tower_service::Service<Request<Incoming>> for Service {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let response = (self.0)(request);
        Box::pin(async move { Ok(response.await) })
    }
}

/// Sets the request's id from its header, and its probe, in its new context.
fn from_headers(request: &Request<Incoming>) {
    let id = request.headers()["x-request-id"].to_str().unwrap();
    REQUEST_ID.set(id.parse().unwrap());
    PROBE.set(Probe);
}

/// Serves `handler` behind `ContextLayer` on a loopback port; each connection is a task
/// spawned with plain `tokio::spawn`.
async fn serve(handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ContextLayer::new()
        .on_request(from_headers)
        .layer(Service(handler));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn request(addr: SocketAddr, id: u64) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}/"))
        .header("x-request-id", id.to_string())
        .body(Full::default())
        .unwrap()
}

/// Runs the two services and the load on `runtime`, from request ids `first..`.
fn load(runtime: &Runtime, first: u64) {
    runtime.block_on(async {
        let db = Arc::new(database::Db::default());
        let billing = serve(Arc::new(move |_| {
            let db = Arc::clone(&db);
            Box::pin(async move {
                let id = REQUEST_ID.get().unwrap();
                tracing::info!(site = "billing", id, poll = POLL.get());
                let answer = db.query(id).await;
                tracing::info!(site = "billing", id, poll = POLL.get());
                Response::new(Full::new(Bytes::from(answer.to_string())))
            })
        }))
        .await;
        // The stock executor: the pooled connections' tasks are plain `tokio::spawn`s.
        let to_billing: Client<Connector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(Connector(billing));
        let gateway = serve(Arc::new(move |_| {
            let to_billing = to_billing.clone();
            Box::pin(async move {
                let id = REQUEST_ID.get().unwrap();
                tracing::info!(site = "gateway", id, poll = POLL.get());
                let response = to_billing.request(request(billing, id)).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, id.to_string(), "billing answers for this request");
                tracing::info!(site = "gateway", id, poll = POLL.get());
                Response::new(Full::new(body))
            })
        }))
        .await;

        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut callers = tokio::task::JoinSet::new();
        for lane in 0..IN_FLIGHT {
            let client = client.clone();
            callers.spawn(async move {
                for id in (first + lane..first + REQUESTS).step_by(IN_FLIGHT as usize) {
                    let response = client.request(request(gateway, id)).await.unwrap();
                    let body = response.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body, id.to_string());
                }
            });
        }
        while let Some(caller) = callers.join_next().await {
            caller.unwrap();
        }
    });
}

/// Checks every line written so far; returns how many there were.
fn check_lines() -> usize {
    let lines: Vec<serde_json::Value> = String::from_utf8(capture().0.lock().unwrap().clone())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let polls = polls().0.lock().unwrap();
    let late_polls: Vec<_> = polls.iter().filter(|(_, (_, ended))| *ended).collect();
    assert!(
        late_polls.is_empty(),
        "{} polls started in a task context whose request had ended: {:?}",
        late_polls.len(),
        &late_polls[..late_polls.len().min(5)]
    );
    let (mut connection_lines, mut in_flight_labels, mut checked) = (0, 0, 0);
    for line in &lines {
        // ctx-tracing writes `Display` values as strings.
        let u = |name: &str| match line.get(name)? {
            serde_json::Value::String(s) => s.parse().ok(),
            value => value.as_u64(),
        };
        let Some(site) = line.get("site").and_then(serde_json::Value::as_str) else {
            continue;
        };
        let labelled = u("request_id");
        checked += 1;
        match site {
            // Handlers run in their request's own context.
            "gateway" | "billing" => assert_eq!(labelled, u("id"), "{line}"),
            // Tasks of a library: a request's id only in a poll that started before
            // that request ended (`late_polls` above), or from a request's own context
            // entered inside the poll (a connection opened from a handler's future).
            "connection" | "driver" | "connect" => {
                connection_lines += usize::from(site == "connection");
                let Some(labelled) = labelled else { continue };
                let poll = u("poll").expect("numbered");
                if let Some(&(inherited, ended)) = polls.get(&poll) {
                    assert!(inherited != labelled || !ended, "{line}");
                }
                let serves = u("serves").or(u("for_request"));
                in_flight_labels += usize::from(serves.is_some_and(|s| s != labelled));
            }
            other => panic!("unknown site {other}"),
        }
    }
    assert!(
        connection_lines >= REQUESTS as usize,
        "every request written"
    );
    eprintln!(
        "{checked} lines checked; {in_flight_labels} library lines carried the id of another \
         request still in flight"
    );
    checked
}

fn runtime(flavor: &str) -> Runtime {
    let mut builder = match flavor {
        "multi_thread" => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    };
    builder.worker_threads(2).enable_all();
    TaskHooks::inherit()
        .on_before_task_poll(|_| before_poll())
        .install(&mut builder);
    builder.build().expect("runtime")
}

#[test]
fn pooled_tasks_never_show_a_request_that_ended_and_let_its_values_go() {
    capture();
    for (flavor, first) in [("multi_thread", 1_000_000), ("current_thread", 2_000_000)] {
        Context::new().run(|| {
            PROBES_DROPPED.store(0, Ordering::SeqCst);
            capture().0.lock().unwrap().clear();
            polls().0.lock().unwrap().clear();
            let runtime = runtime(flavor);
            load(&runtime, first);
            let checked = check_lines();
            assert!(checked > 5 * REQUESTS as usize, "{flavor}: {checked} lines");
            // Every request has sent its response; the last bodies are dropped by
            // the server's connection tasks as they go on. The pooled connections and
            // the driver are still alive, idle, holding no request's values.
            let probes = 2 * REQUESTS as usize;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while PROBES_DROPPED.load(Ordering::SeqCst) < probes
                && std::time::Instant::now() < deadline
            {
                runtime.block_on(async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                });
            }
            assert_eq!(
                PROBES_DROPPED.load(Ordering::SeqCst),
                probes,
                "{flavor}: every request's values are dropped once it ends"
            );
            hooks::shutdown(runtime);
        });
    }
}
