//! The main demo: request-scoped context in an axum service, checked end to end.
//!
//! Starts an axum server on loopback whose every request runs in its own context
//! (`ContextLayer`, seeding the user and request id from headers), then drives it with
//! a real HTTP client: 2 000 requests, 64 in flight, each as its own user. Handlers read
//! the values after awaits, in a spawned sub-task, in `spawn_blocking`, in a `JoinSet`
//! and in a simulated database call, and echo them; the client checks every hop. The
//! worker threads run in strict mode, so a `set` that would leak between requests panics
//! instead. Then the same load without the layer, for the cost. Exits non-zero on any
//! mismatch.
//!
//! It logs through ctx-tracing: the handler logs a sampled request now and then (to
//! stderr), with no id in the call, and the line carries `request.id` and `USER` from
//! the request's context.
//!
//! `cargo run -p ctx-tests --release --example http`

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ctx_tests::http::{self, Report};

const REQUESTS: usize = 2_000;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 3;

fn main() -> ExitCode {
    let fields = ctx_tracing::ContextFields::new()
        .display(&http::REQUEST_ID)
        .display(&http::USER);
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .map_event_format(|format| fields.wrap(format))
        .init();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(ctx_tokio::strict::enable)
        .build()
        .expect("tokio runtime");
    let outcome = ctx_tokio::block_on(&rt, async {
        tokio::time::timeout(Duration::from_secs(120), run()).await
    });
    let Ok((layered, bare)) = outcome else {
        eprintln!("timed out");
        return ExitCode::FAILURE;
    };

    println!(
        "request-scoped context over HTTP: axum on 127.0.0.1, {REQUESTS} requests × {ROUNDS} rounds, {IN_FLIGHT} in flight"
    );
    println!();
    println!("| server | requests | hops checked | mismatches | failures | req/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, (report, elapsed)) in [
        ("with ContextLayer", &layered),
        ("without (no context)", &bare),
    ] {
        let checked = if name.starts_with("with ") {
            (
                report.hops_checked.to_string(),
                report.mismatches.to_string(),
            )
        } else {
            ("–".to_owned(), "–".to_owned())
        };
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.2} ms | {:.2} ms |",
            report.requests,
            checked.0,
            checked.1,
            report.failures,
            report.requests as f64 / elapsed.as_secs_f64(),
            report.percentile(0.50).as_secs_f64() * 1e3,
            report.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
    let cost = 1.0
        - (layered.0.requests as f64 / layered.1.as_secs_f64())
            / (bare.0.requests as f64 / bare.1.as_secs_f64());
    println!();
    println!("throughput cost of the layer: {:.1} %", cost * 100.0);

    let (report, _) = &layered;
    if report.mismatches > 0 || report.failures > 0 || report.requests != REQUESTS * ROUNDS {
        eprintln!(
            "FAILED: {} mismatches, {} failures",
            report.mismatches, report.failures
        );
        return ExitCode::FAILURE;
    }
    println!(
        "every hop of every request saw its own user and id ({} hops)",
        report.hops_checked
    );
    ExitCode::SUCCESS
}

/// Alternates rounds with and without the layer (after a warm-up of each), so that both
/// see the same machine; returns each one's merged report and time under load.
async fn run() -> ((Report, Duration), (Report, Duration)) {
    let (layered_listener, layered_addr) = http::loopback().await;
    let (bare_listener, bare_addr) = http::loopback().await;
    let servers = [
        tokio::spawn(http::serve_axum(layered_listener, true)),
        tokio::spawn(http::serve_axum(bare_listener, false)),
    ];
    http::drive(layered_addr, 200, IN_FLIGHT).await;
    http::drive(bare_addr, 200, IN_FLIGHT).await;

    let mut layered = (Report::default(), Duration::ZERO);
    let mut bare = (Report::default(), Duration::ZERO);
    for _ in 0..ROUNDS {
        for (addr, total) in [(layered_addr, &mut layered), (bare_addr, &mut bare)] {
            let start = Instant::now();
            let report = http::drive(addr, REQUESTS, IN_FLIGHT).await;
            total.1 += start.elapsed();
            merge(&mut total.0, report);
        }
    }
    for server in servers {
        server.abort();
    }
    (layered, bare)
}

fn merge(into: &mut Report, from: Report) {
    into.requests += from.requests;
    into.hops_checked += from.hops_checked;
    into.mismatches += from.mismatches;
    into.failures += from.failures;
    into.latencies.extend(from.latencies);
}
