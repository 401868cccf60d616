//! Two services in one process, A calling B: request context across a service
//! boundary through W3C baggage. Shared by `tests/services.rs` and the demo
//! (`cargo run -p ctx-tests --release --example services`).
//!
//! A receives a request with baggage (a tenant, a user) and an `x-request-id`, sets a
//! value of its own (`via`), and calls B from a spawned task through a client wrapped in
//! ctx-opentelemetry's layer. B's handler and a task it spawns read the values; B echoes
//! them, and A echoes its own reading and B's.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ctx_opentelemetry::{ContextBaggage, InjectService};
use ctx_vars::{ContextLayer, context_var};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_service::Service;

use crate::http::client;

/// The customer, from baggage.
#[context_var]
pub static TENANT: String;

/// The signed-in user's id, from baggage.
#[context_var]
pub static USER_ID: u64;

/// The request id, from its own header.
#[context_var]
pub static REQUEST_ID: u64;

/// Set by service A before it calls B: a value that starts in the middle of the chain.
#[context_var]
pub static VIA: String;

/// What travels between the services, and how.
pub fn baggage() -> ContextBaggage {
    ContextBaggage::new()
        .var("tenant", &TENANT)
        .var("user.id", &USER_ID)
        .var("via", &VIA)
        .header("x-request-id", &REQUEST_ID)
}

/// What the code reading the values sees: `tenant/user/request/via`.
pub fn seen() -> String {
    format!(
        "{}/{}/{}/{}",
        TENANT.get().unwrap_or_default(),
        USER_ID.get().unwrap_or_default(),
        REQUEST_ID.get().unwrap_or_default(),
        VIA.get().unwrap_or_default(),
    )
}

/// Service B: its handler and a task it spawns read the values.
pub fn service_b() -> Router {
    async fn handler() -> String {
        let spawned = ctx_tokio::spawn(async { seen() }).await.expect("task");
        format!("{}\n{spawned}", seen())
    }
    Router::new()
        .route("/", get(handler))
        .layer(ContextLayer::new().on_request(baggage()))
}

/// A's client for B: every request it sends carries the sender's values.
type ClientB = InjectService<Client<HttpConnector, Empty<Bytes>>>;

/// Service A: sets `via`, then calls B from a spawned task.
pub fn service_a(b: SocketAddr) -> Router {
    async fn handler(State((b, client)): State<(SocketAddr, ClientB)>) -> String {
        VIA.set("a".to_owned());
        let from_b = ctx_tokio::spawn(async move {
            let mut client = client;
            poll_fn(|cx| client.poll_ready(cx)).await.expect("ready");
            let request = http::Request::get(format!("http://{b}/"))
                .body(Empty::new())
                .expect("request");
            let response = client.call(request).await.expect("B answers");
            let body = response.into_body().collect().await.expect("body");
            String::from_utf8_lossy(&body.to_bytes()).into_owned()
        })
        .await
        .expect("task");
        format!("{}\n{from_b}", seen())
    }
    let client = baggage().layer().layer(client());
    Router::new()
        .route("/", get(handler))
        .with_state((b, client))
        .layer(ContextLayer::new().on_request(baggage()))
}

/// Starts B, then A, on loopback; A's address.
pub async fn start() -> SocketAddr {
    let serve = |router: Router, listener: TcpListener| async move {
        axum::serve(listener, router).await.expect("serves");
    };
    let b = TcpListener::bind("127.0.0.1:0").await.expect("bind B");
    let b_addr = b.local_addr().expect("B's address");
    tokio::spawn(serve(service_b(), b));
    let a = TcpListener::bind("127.0.0.1:0").await.expect("bind A");
    let a_addr = a.local_addr().expect("A's address");
    tokio::spawn(serve(service_a(b_addr), a));
    a_addr
}

/// What the client saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests answered.
    pub requests: usize,
    /// Readings compared with what the request sent (three per request: A, B, B's task).
    pub checked: usize,
    /// Readings that were not the request's own.
    pub mismatches: usize,
    /// Requests that failed outright.
    pub failures: usize,
}

/// Sends `requests` requests to A, `in_flight` at a time, each with its own tenant, user
/// and request id, and checks every reading in the echo.
pub async fn drive(a: SocketAddr, requests: usize, in_flight: usize) -> Report {
    let client = client();
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..requests {
        let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
        let client = client.clone();
        set.spawn(async move {
            let _permit = permit;
            // A space and a non-ASCII letter: percent-encoded on the wire.
            let tenant = format!("tenant {i} é");
            let request = http::Request::get(format!("http://{a}/"))
                .header(
                    "baggage",
                    format!("tenant=tenant%20{i}%20%C3%A9,user.id={i}"),
                )
                .header("x-request-id", (1_000_000 + i).to_string())
                .body(Empty::new())
                .expect("request");
            let body = async {
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(String::from_utf8_lossy(&body.to_bytes()).into_owned())
            }
            .await;
            (body, format!("{tenant}/{i}/{}/a", 1_000_000 + i))
        });
    }
    let mut report = Report::default();
    while let Some(joined) = set.join_next().await {
        let (body, expected) = joined.expect("client task");
        let Ok(body) = body else {
            report.failures += 1;
            continue;
        };
        report.requests += 1;
        // One line per reading: A's, B's, B's task's.
        let readings: Vec<&str> = body.lines().collect();
        report.checked += 3;
        report.mismatches += 3 - readings.iter().filter(|r| **r == expected).count().min(3);
        if readings.len() != 3 {
            report.mismatches += 1;
        }
    }
    report
}
