//! Request context across services: two axum services on loopback, A calling B.
//!
//! A receives each request with W3C `baggage` (a tenant with a space and an accent, a
//! user id) and an `x-request-id`, sets a value of its own, and calls B from a spawned
//! task through a hyper client wrapped in ctx-opentelemetry's layer. B's handler and a
//! task it spawns read every value, and the client checks all three readings of every
//! request. Exits non-zero on any mismatch.
//!
//! `cargo run -p ctx-tests --release --example services`

use std::process::ExitCode;
use std::time::Instant;

use ctx_tests::services::{drive, start};

const REQUESTS: usize = 1_000;
const IN_FLIGHT: usize = 32;

fn main() -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(ctx_vars::strict::enable)
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let report = ctx_tokio::block_on(&rt, async {
        let a = start().await;
        drive(a, REQUESTS, IN_FLIGHT).await
    });
    println!(
        "{} requests through A and B, {IN_FLIGHT} in flight, in {:.2?}: {} readings checked, {} mismatches, {} failures",
        report.requests,
        started.elapsed(),
        report.checked,
        report.mismatches,
        report.failures
    );
    if report.mismatches == 0 && report.failures == 0 && report.requests == REQUESTS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
