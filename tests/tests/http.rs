//! Request-scoped context on a real HTTP stack, over loopback: no request ever sees
//! another's values, through axum or plain hyper, at any hop; and the leak that the
//! layer prevents, shown without it and caught by strict mode.

use ctx_tests::fresh;
use ctx_tests::http::{self, Report};
use ctx_vars::strict;
use std::future::Future;

use tokio::net::TcpListener;
use tokio::runtime::Runtime;

fn runtime(workers: usize, strict_mode: bool) -> Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(workers).enable_all();
    if strict_mode {
        builder.on_thread_start(strict::enable);
    }
    builder.build().expect("tokio runtime")
}

fn assert_clean(report: &Report, requests: usize) {
    assert_eq!(report.failures, 0, "{report:?}");
    assert_eq!(report.requests, requests);
    assert_eq!(report.hops_checked, requests * http::HOPS.len());
    assert_eq!(report.mismatches, 0);
}

/// Serves with `serve` (layered) on 4 strict workers and drives 1 000 requests at it.
fn no_mismatches<F>(serve: fn(TcpListener, bool) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    fresh(|| {
        let rt = runtime(4, true);
        let report = ctx_tokio::block_on(&rt, async {
            let (listener, addr) = http::loopback().await;
            let server = tokio::spawn(serve(listener, true));
            let report = http::drive(addr, 1000, 64).await;
            server.abort();
            report
        });
        assert_clean(&report, 1000);
    });
}

#[test]
fn axum_with_the_layer_has_no_mismatches() {
    no_mismatches(http::serve_axum);
}

#[test]
fn hyper_with_the_layer_has_no_mismatches() {
    no_mismatches(http::serve_hyper);
}

/// `/login` sets the user in the handler; `/whoami` only reads it.
fn login_then_whoami(
    rt: &Runtime,
    layered: bool,
) -> (Result<String, String>, Result<String, String>) {
    ctx_tokio::block_on(rt, async {
        let (listener, addr) = http::loopback().await;
        let server = tokio::spawn(http::serve_axum(listener, layered));
        let client = http::client();
        let login = http::fetch(&client, addr, "/login?alice", None).await;
        let whoami = http::fetch(&client, addr, "/whoami", None).await;
        server.abort();
        (login, whoami)
    })
}

#[test]
fn without_the_layer_one_request_leaks_into_the_next() {
    fresh(|| {
        // One worker, so both requests run on the same thread.
        let (login, whoami) = login_then_whoami(&runtime(1, false), false);
        assert_eq!(login.unwrap(), "alice/0");
        assert_eq!(
            whoami.unwrap(),
            "alice/0",
            "another request's user: the leak"
        );

        let (login, whoami) = login_then_whoami(&runtime(1, false), true);
        assert_eq!(login.unwrap(), "alice/0");
        assert_eq!(whoami.unwrap(), "/0", "with the layer, nobody");
    });
}

#[test]
fn strict_mode_turns_the_leak_into_an_error() {
    fresh(|| {
        let (login, whoami) = login_then_whoami(&runtime(1, true), false);
        assert!(login.is_err(), "the handler's set panicked: {login:?}");
        assert_eq!(whoami.unwrap(), "/0");

        let (login, whoami) = login_then_whoami(&runtime(1, true), true);
        assert_eq!(login.unwrap(), "alice/0");
        assert_eq!(whoami.unwrap(), "/0");
    });
}

/// hyper-util's client spawns a connection task through its executor when a request
/// needs a new connection, and pools the connection for later requests. Under the
/// inheriting executor that task keeps the first request's context (here, a value that
/// counts its drops) for as long as the connection lives; under the detached one it
/// keeps nothing. A value declared `inherit = false` never reaches it either way.
#[test]
fn pooled_connection_tasks_keep_no_request_context_under_the_detached_executor() {
    use ctx_tests::Tracked;
    use ctx_tokio::ContextExecutor;
    use ctx_vars::{Context, ContextVar};
    use http_body_util::Empty;
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SESSION: ContextVar<Tracked> = ContextVar::new("session");
    static TRANSACTION: ContextVar<Tracked> = ContextVar::new("tx").inherit(false);

    /// Makes one request through a new client with `executor`, from a context holding
    /// both values, then returns (session drops, transaction drops) with the pooled
    /// connection still open.
    async fn after_one_request(
        addr: std::net::SocketAddr,
        executor: ContextExecutor,
    ) -> (usize, usize) {
        let (session, transaction) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let client: Client<_, Empty<Bytes>> = Client::builder(executor).build_http();
        let request = Context::new()
            .with_value(&SESSION, Tracked::new(&session))
            .with_value(&TRANSACTION, Tracked::new(&transaction))
            .scope(http::fetch(&client, addr, "/whoami", None));
        request.await.expect("request");
        // The request's own context is gone: whatever is left is held elsewhere.
        let dropped = (
            session.load(Ordering::SeqCst),
            transaction.load(Ordering::SeqCst),
        );
        drop(client);
        dropped
    }

    fresh(|| {
        let rt = runtime(2, false);
        ctx_tokio::block_on(&rt, async {
            let (listener, addr) = http::loopback().await;
            let server = tokio::spawn(http::serve_axum(listener, true));
            assert_eq!(
                after_one_request(addr, ContextExecutor::new()).await,
                (0, 1),
                "inherit: the pooled connection's task holds the session"
            );
            assert_eq!(
                after_one_request(addr, ContextExecutor::detached()).await,
                (1, 1),
                "detached: it holds nothing"
            );
            assert_eq!(
                after_one_request(addr, ContextExecutor::with_context(Context::new())).await,
                (1, 1),
                "fixed: only the context it was given"
            );
            server.abort();
        });
    });
}
