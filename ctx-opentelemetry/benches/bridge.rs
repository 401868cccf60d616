//! The per-poll cost of OpenTelemetry's context following ctx (`bridge`), against ctx's
//! own wrapper without it and OpenTelemetry's own `with_context` wrapper, in one run.
//!
//! The bridge is process-wide once installed, so the figures without it are taken
//! first.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ctx_vars::{Context, FutureExt};
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt as OtelFutureExt;

use ctx_bench_support::{Yields, drive};

const POLLS: u32 = 1000;

fn poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("bridge_poll");
    let otel = opentelemetry::Context::new().with_baggage([KeyValue::new("tenant", "acme")]);
    let ctx = Context::new();

    group.bench_function("bare", |b| b.iter(|| drive(Yields(black_box(POLLS)))));
    group.bench_function("ctx_with_context", |b| {
        b.iter(|| {
            drive(FutureExt::with_context(
                Yields(black_box(POLLS)),
                ctx.clone(),
            ))
        });
    });
    group.bench_function("otel_with_context", |b| {
        b.iter(|| {
            drive(OtelFutureExt::with_context(
                Yields(black_box(POLLS)),
                otel.clone(),
            ))
        });
    });

    assert!(ctx_opentelemetry::bridge::install());
    group.bench_function("ctx_with_bridge_unset", |b| {
        b.iter(|| {
            drive(FutureExt::with_context(
                Yields(black_box(POLLS)),
                ctx.clone(),
            ))
        });
    });
    let mut with_otel = Context::new();
    with_otel.run(|| ctx_opentelemetry::bridge::set(otel.clone()));
    group.bench_function("ctx_with_bridge", |b| {
        b.iter(|| {
            drive(FutureExt::with_context(
                Yields(black_box(POLLS)),
                with_otel.clone(),
            ))
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = poll
}
criterion_main!(benches);
