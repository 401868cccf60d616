//! ctx-actix-web on a real actix-web server over loopback: 1 000 requests, 32 in flight,
//! each as its own user, read in the handler, after an await, in a spawned local task, in
//! `web::block` and in a streaming body; a leaking `set` caught by strict mode; the
//! request's context ended with its body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use actix_web::dev::{ServerHandle, ServiceRequest};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use ctx_actix_web::ContextMiddleware;
use ctx_opentelemetry::ContextBaggage;
use ctx_vars::{Context, context_var, strict};
use futures_core::Stream;
use reqwest_middleware::reqwest::Client;

#[context_var]
static USER: String;

#[context_var]
static REQUEST_ID: u64;

/// Set by the handler: the streaming body must see it.
#[context_var]
static STAGE: &'static str;

/// From the caller's W3C baggage.
#[context_var]
static TENANT: String;

fn from_headers(request: &ServiceRequest) {
    let baggage = ContextBaggage::new().var("tenant", &TENANT);
    baggage.extract_from(|name| request.headers().get_all(name).map(|v| v.as_bytes()));
    let header = |name| request.headers().get(name)?.to_str().ok();
    if let Some(user) = header("x-user") {
        USER.set(user.to_owned());
    }
    if let Some(id) = header("x-request-id").and_then(|id| id.parse().ok()) {
        REQUEST_ID.set(id);
    }
}

/// What code reading the values sees: `user/id/tenant`.
fn seen() -> String {
    format!(
        "{}/{}/{}",
        USER.get().unwrap_or_default(),
        REQUEST_ID.get().unwrap_or_default(),
        TENANT.get().unwrap_or_default()
    )
}

/// A body whose chunks are made when actix-web polls it, after the handler returned,
/// with a pending poll between them so that other requests run in between.
struct Hops {
    head: Option<String>,
    step: u8,
}

impl Stream for Hops {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.step += 1;
        match self.step {
            1 => Poll::Ready(self.head.take().map(|head| Ok(Bytes::from(head)))),
            2 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            3 => {
                let line = format!("{} {}\n", seen(), STAGE.get().unwrap_or("-"));
                Poll::Ready(Some(Ok(Bytes::from(line))))
            }
            _ => Poll::Ready(None),
        }
    }
}

/// Reads the values at every hop; the body's own line comes last.
async fn hops() -> HttpResponse {
    let mut lines = vec![seen()];
    tokio::task::yield_now().await;
    lines.push(seen());
    let spawned = ctx_actix_web::rt::spawn(async {
        tokio::task::yield_now().await;
        seen()
    });
    lines.push(spawned.await.expect("spawned task"));
    lines.push(ctx_actix_web::web::block(seen).await.expect("blocking job"));
    STAGE.set("handler");
    let head = lines.iter().map(|line| format!("{line}\n")).collect();
    HttpResponse::Ok().streaming(Hops {
        head: Some(head),
        step: 0,
    })
}

/// A `set` in a plain `actix_web::rt::spawn` task, and in one of ctx's: which were
/// refused, and what the handler sees after them.
async fn leak() -> String {
    let plain = actix_web::rt::spawn(async { USER.set("leaked".to_owned()) });
    let plain = if plain.await.is_err() {
        "refused"
    } else {
        "allowed"
    };
    let carried = ctx_actix_web::rt::spawn(async { USER.set("in its own copy".to_owned()) });
    let carried = if carried.await.is_err() {
        "refused"
    } else {
        "allowed"
    };
    format!("{plain} {carried} {}", seen())
}

type Ends = Arc<Mutex<mpsc::Sender<u64>>>;

/// Reports its request id once the request's context has ended.
async fn ending(ends: web::Data<Ends>) -> String {
    let signal = Context::current().end_signal().expect("an endable context");
    let ended_in_handler = signal.is_ended();
    let id = REQUEST_ID.get().unwrap_or_default();
    let ends = Arc::clone(&ends);
    signal.on_end(move || {
        let _ = ends.lock().expect("unpoisoned").send(id);
    });
    format!("ended in handler: {ended_in_handler}")
}

struct Server {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// An actix-web server on loopback, 2 workers in strict mode, in a thread of its own.
    fn start(ends: Ends) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    strict::enable();
                    App::new()
                        .app_data(web::Data::new(Arc::clone(&ends)))
                        .route("/hops", web::get().to(hops))
                        .route("/leak", web::get().to(leak))
                        .route("/ends", web::get().to(ending))
                        .wrap(ContextMiddleware::new().on_request(from_headers))
                })
                .workers(2)
                .bind(("127.0.0.1", 0))?;
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("test waiting");
                server.await
            })
        });
        let (addr, handle) = rx.recv().expect("the server starts");
        Server {
            addr,
            handle,
            thread,
        }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.handle.stop(true));
        self.thread
            .join()
            .expect("server thread")
            .expect("server ran");
    }
}

/// Sends `GET path` as `user`/`id`; the body.
async fn get(client: &Client, addr: SocketAddr, path: &str, user: &str, id: u64) -> String {
    let response = client
        .get(format!("http://{addr}{path}"))
        .header("x-user", user)
        .header("x-request-id", id.to_string())
        .header("baggage", format!("tenant=t{id}"))
        .send()
        .await
        .expect("the server answers");
    assert!(response.status().is_success(), "{}", response.status());
    response.text().await.expect("a body")
}

fn run(test: impl AsyncFnOnce(SocketAddr, Client), ends: Ends) {
    Context::new().run(|| {
        let server = Server::start(ends);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(test(server.addr, Client::new()));
        server.stop(&rt);
    });
}

fn no_ends() -> Ends {
    Arc::new(Mutex::new(mpsc::channel().0))
}

#[test]
fn every_hop_of_every_request_sees_its_own_values() {
    run(
        async |addr, client| {
            let permits = Arc::new(tokio::sync::Semaphore::new(32));
            let mut requests = tokio::task::JoinSet::new();
            for i in 0..1_000u64 {
                let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
                let client = client.clone();
                requests.spawn(async move {
                    let _permit = permit;
                    let (user, id) = (format!("user-{i}"), 1_000_000 + i);
                    let body = get(&client, addr, "/hops", &user, id).await;
                    let expected = format!("{user}/{id}/t{id}");
                    let lines: Vec<&str> = body.lines().collect();
                    let mut mismatches = lines[..lines.len() - 1]
                        .iter()
                        .filter(|line| **line != expected)
                        .count();
                    // Handler, after an await, spawned task, blocking job, then the body.
                    mismatches += usize::from(lines.len() != 5);
                    mismatches +=
                        usize::from(lines.last() != Some(&&*format!("{expected} handler")));
                    mismatches
                });
            }
            let mut mismatches = 0;
            while let Some(joined) = requests.join_next().await {
                mismatches += joined.expect("client task");
            }
            assert_eq!(mismatches, 0);
        },
        no_ends(),
    );
}

#[test]
fn strict_mode_refuses_a_set_in_a_plain_actix_task() {
    run(
        async |addr, client| {
            for i in 0..4 {
                let body = get(&client, addr, "/leak", "ada", i).await;
                // The plain task's set panicked instead of staying on the worker thread;
                // ctx's task set in its own copy, which the handler does not see.
                assert_eq!(body, format!("refused allowed ada/{i}/t{i}"));
            }
        },
        no_ends(),
    );
}

#[test]
fn a_requests_context_ends_with_its_body() {
    let (tx, rx) = mpsc::channel();
    run(
        async |addr, client| {
            for id in 1..=3 {
                let body = get(&client, addr, "/ends", "ada", id).await;
                assert_eq!(body, "ended in handler: false");
            }
        },
        Arc::new(Mutex::new(tx)),
    );
    let mut ended: Vec<u64> = (0..3)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).expect("ended"))
        .collect();
    ended.sort_unstable();
    assert_eq!(ended, [1, 2, 3]);
}
