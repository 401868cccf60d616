//! Instruction counts of one poll with the OpenTelemetry bridge, for
//! `valgrind --tool=callgrind`: repeatable where criterion's times swing. See
//! BENCHMARKS.md.
//!
//! `bridge_icount <op> <n>` polls a future `n` times, with `op` one of `bare` (no wrapper),
//! `ctx` (ctx's wrapper, no bridge), `otel` (OpenTelemetry's own `with_context`),
//! `bridge_unset` (the bridge installed, no OpenTelemetry context stored) and `bridge`
//! (one stored). The cost of a poll is the difference between the counts for two `n`s,
//! divided by the difference of the `n`s.

use ctx_vars::{Context, FutureExt};
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt as OtelFutureExt;

use ctx_bench_support::{Yields, drive};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(op), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<u32>())) else {
        eprintln!("usage: bridge_icount <bare|ctx|otel|bridge_unset|bridge> <n>");
        std::process::exit(2);
    };
    let otel = opentelemetry::Context::new().with_baggage([KeyValue::new("tenant", "acme")]);
    let mut ctx = Context::new();
    if op.starts_with("bridge") {
        assert!(ctx_opentelemetry::bridge::install());
    }
    if op == "bridge" {
        ctx.run(|| ctx_opentelemetry::bridge::set(otel.clone()));
    }
    match op.as_str() {
        "bare" => drive(Yields(n)),
        "ctx" | "bridge_unset" | "bridge" => drive(FutureExt::with_context(Yields(n), ctx)),
        "otel" => drive(OtelFutureExt::with_context(Yields(n), otel)),
        other => panic!("unknown op {other:?}"),
    }
}
