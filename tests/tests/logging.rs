//! Every log line of a request carries its id and tenant, through ctx-tracing, in text
//! and in JSON: tower-http's `TraceLayer` lines, the handler's, and those of its spawned
//! tasks, blocking jobs and `JoinSet` tasks; 1 000 requests over loopback, 32 in flight,
//! and no line with another request's values.
//!
//! The logs go to a process-wide subscriber (tasks run on many threads), so this file
//! holds one test.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::routing::get;
use ctx_tests::http::{self, loopback};
use ctx_tests::{Capture, fresh};
use ctx_tokio::JoinSetExt;
use ctx_tracing::ContextFields;
use ctx_vars::{ContextLayer, context_var};
use tower_http::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;

#[context_var]
static REQUEST_ID: u64;

#[context_var]
static TENANT: String;

/// The tenant of request `id`: derived, so that every line can be checked.
fn tenant_of(id: u64) -> String {
    format!("t{}", id % 7)
}

/// Sets the request's variables from its headers, inside its context.
fn from_headers(request: &Request) {
    let id = request.headers().get("x-request-id");
    if let Some(id) = id.and_then(|v| v.to_str().ok()?.parse().ok()) {
        REQUEST_ID.set(id);
        TENANT.set(tenant_of(id));
    }
}

/// Logs from the handler and from every kind of work it starts. `rid` is passed
/// explicitly, as the truth each line is checked against.
async fn handler(Path(rid): Path<u64>) -> &'static str {
    tracing::info!(rid, "handler");
    ctx_tokio::spawn(async move { tracing::info!(rid, "spawned") })
        .await
        .unwrap();
    ctx_tokio::spawn_blocking(move || tracing::info!(rid, "blocking"))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    set.ctx_spawn(async move { tracing::info!(rid, "join_set") });
    set.join_next().await.unwrap().unwrap();
    "ok"
}

/// The layer order that works: `ContextLayer` outermost (added last), so that
/// `TraceLayer`'s span and its "started processing request" line already run in the
/// request's context.
fn app() -> Router {
    Router::new()
        .route("/r/{rid}", get(handler))
        .layer(TraceLayer::new_for_http())
        .layer(ContextLayer::new().on_request(from_headers))
}

/// The request a text line belongs to: its `rid` field, or the id in `TraceLayer`'s
/// span (`uri=/r/N`).
fn truth_in_text(line: &str) -> Option<u64> {
    let number_after = |marker: &str| {
        let at = line.find(marker)? + marker.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    number_after(" rid=").or_else(|| number_after("uri=/r/"))
}

/// `name=value` of a text line, where `value` runs to the next space.
fn text_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    line[at..].split(' ').next()
}

/// The request a JSON line belongs to, and its top-level context fields.
fn truth_in_json(line: &serde_json::Value) -> Option<u64> {
    line["rid"].as_u64().or_else(|| {
        let uri = line["span"]["uri"].as_str()?;
        uri.strip_prefix("/r/")?.parse().ok()
    })
}

#[test]
fn every_line_of_every_request_carries_its_values_in_text_and_json() {
    let (text, json) = (Capture::default(), Capture::default());
    let fields = ContextFields::new()
        .display_as("request_id", &REQUEST_ID)
        .display_as("tenant", &TENANT);
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_writer(text.clone())
                .map_event_format(|format| fields.clone().wrap(format)),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(json.clone())
                .map_event_format(|format| fields.wrap(format)),
        );
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    const REQUESTS: u64 = 1000;
    fresh(|| {
        tracing::info!("outside any request");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        ctx_tokio::block_on(&runtime, async {
            let (listener, addr) = loopback().await;
            let server = tokio::spawn(async move { axum::serve(listener, app()).await });
            let client = http::client();
            let permits = Arc::new(tokio::sync::Semaphore::new(32));
            let mut requests = tokio::task::JoinSet::new();
            for id in 0..REQUESTS {
                let permit = Arc::clone(&permits).acquire_owned().await.unwrap();
                let client = client.clone();
                requests.spawn(async move {
                    let _permit = permit;
                    let path = format!("/r/{id}");
                    http::fetch(&client, addr, &path, Some(("user", id))).await
                });
            }
            while let Some(done) = requests.join_next().await {
                assert_eq!(done.unwrap().as_deref(), Ok("ok"));
            }
            server.abort();
        });
    });

    // Text.
    let lines = text.lines();
    let outside: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("outside any request"))
        .collect();
    assert_eq!(outside.len(), 1);
    assert!(
        !outside[0].contains("request_id"),
        "no noise: {}",
        outside[0]
    );
    let mut per_request = vec![0usize; REQUESTS as usize];
    let mut mismatches = Vec::new();
    for line in &lines {
        let Some(rid) = truth_in_text(line) else {
            continue;
        };
        per_request[rid as usize] += 1;
        let expected = (Some(rid.to_string()), Some(tenant_of(rid)));
        let seen = (
            text_field(line, "request_id").map(str::to_owned),
            text_field(line, "tenant").map(str::to_owned),
        );
        if seen != expected {
            mismatches.push(line.clone());
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} text lines: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
    let started = lines
        .iter()
        .filter(|l| l.contains("started processing request"))
        .count();
    assert_eq!(
        started, REQUESTS as usize,
        "TraceLayer's own line, once a request"
    );
    // started, handler, spawned, blocking, join_set, finished.
    assert!(
        per_request.iter().all(|&n| n == 6),
        "lines per request: {:?}",
        &per_request[..10]
    );

    // JSON, parsed: the fields are top-level members.
    let lines: Vec<serde_json::Value> = json
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let outside: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "outside any request")
        .collect();
    assert_eq!(outside.len(), 1);
    assert!(
        outside[0].get("request_id").is_none(),
        "no noise: {}",
        outside[0]
    );
    let mut per_request = vec![0usize; REQUESTS as usize];
    let mut mismatches = Vec::new();
    for line in &lines {
        let Some(rid) = truth_in_json(line) else {
            continue;
        };
        per_request[rid as usize] += 1;
        if line["request_id"] != rid.to_string().as_str()
            || line["tenant"] != tenant_of(rid).as_str()
        {
            mismatches.push(line.to_string());
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} JSON lines: {:?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(5)]
    );
    assert!(
        per_request.iter().all(|&n| n == 6),
        "lines per request: {:?}",
        &per_request[..10]
    );
}
