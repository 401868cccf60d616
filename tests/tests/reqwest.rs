//! ctx-opentelemetry's reqwest-middleware `Middleware` against a loopback server that
//! echoes what it received: each request carries the values of the task that sends it.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use ctx_tests::fresh;
use ctx_tests::http::loopback;
use ctx_tests::services::{REQUEST_ID, TENANT, USER_ID, baggage};
use http::HeaderMap;
use reqwest_middleware::reqwest::Client;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

/// `baggage|x-request-id` as the server received them (`-` for a missing header).
async fn echo(headers: HeaderMap) -> String {
    let header = |name: &str| {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("visible ASCII"))
            .collect();
        if values.is_empty() {
            "-".to_owned()
        } else {
            values.join(",")
        }
    };
    format!("{}|{}", header("baggage"), header("x-request-id"))
}

fn client() -> ClientWithMiddleware {
    ClientBuilder::new(Client::new())
        .with(baggage().middleware())
        .build()
}

/// Runs `test` with the echo server's URL and a client, on a 2-worker runtime.
fn with_echo<F>(test: impl FnOnce(String, ClientWithMiddleware) -> F) -> F::Output
where
    F: Future,
{
    fresh(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        ctx_tokio::block_on(&rt, async {
            let (listener, addr) = loopback().await;
            let server = tokio::spawn(async move {
                axum::serve(listener, Router::new().route("/", get(echo)))
                    .await
                    .expect("serves");
            });
            let output = test(format!("http://{addr}/"), client()).await;
            server.abort();
            output
        })
    })
}

async fn send(client: &ClientWithMiddleware, url: &str) -> String {
    let response = client.get(url).send().await.expect("the server answers");
    assert!(response.status().is_success());
    response.text().await.expect("a body")
}

#[test]
fn each_request_carries_the_values_of_the_task_that_sends_it() {
    let mismatches = with_echo(|url, client| async move {
        // The client is built and shared here: what it sends is never this context's.
        TENANT.set("builder".to_owned());
        let permits = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..1_000u64 {
            let permit = Arc::clone(&permits).acquire_owned().await.expect("open");
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(ctx_tokio::spawn(async move {
                let _permit = permit;
                TENANT.set(format!("tenant {i}"));
                USER_ID.set(i);
                REQUEST_ID.set(1_000_000 + i);
                // Interleave with the other senders before sending.
                tokio::task::yield_now().await;
                let echoed = send(&client, &url).await;
                let expected = format!("tenant=tenant%20{i},user.id={i}|{}", 1_000_000 + i);
                usize::from(echoed != expected)
            }));
        }
        let mut mismatches = 0;
        while let Some(joined) = tasks.join_next().await {
            mismatches += joined.expect("client task").expect("sender");
        }
        // The senders' sets stayed in their tasks.
        assert_eq!(TENANT.get().as_deref(), Some("builder"));
        mismatches
    });
    assert_eq!(mismatches, 0);
}

#[test]
fn a_context_with_nothing_set_sends_no_header() {
    let echoed = with_echo(|url, client| async move { send(&client, &url).await });
    assert_eq!(echoed, "-|-");
}

#[test]
fn entries_already_on_the_request_are_kept_and_ours_replace_their_own_keys() {
    let echoed = with_echo(|url, client| async move {
        TENANT.set("acme".to_owned());
        let response = client
            .get(&url)
            .header("baggage", "region=eu,tenant=stale")
            .send()
            .await
            .expect("the server answers");
        response.text().await.expect("a body")
    });
    assert_eq!(echoed, "region=eu,tenant=acme|-");
}

#[test]
fn a_task_spawned_without_the_context_sends_nothing_of_it() {
    let echoed = with_echo(|url, client| async move {
        TENANT.set("acme".to_owned());
        REQUEST_ID.set(7);
        // A plain spawn does not carry the context: a missing value, never a wrong one.
        let plain = tokio::spawn(async move { send(&client, &url).await });
        plain.await.expect("task")
    });
    assert_eq!(echoed, "-|-");
}
