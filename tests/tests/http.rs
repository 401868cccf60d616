//! Request-scoped context on a real HTTP stack, over loopback: no request ever sees
//! another's values, through axum or plain hyper, at any hop; and the leak that the
//! layer prevents, shown without it and caught by strict mode.

use ctx_core::strict;
use ctx_tests::fresh;
use ctx_tests::http::{self, Report};
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
