//! ctx-vars against its peers, side by side in one run.
//!
//! Run with `cargo xtask bench`, which also prints the ratios against the targets and
//! writes them into BENCHMARKS.md. Peers: a `thread_local!` `Cell`, tokio's
//! `task_local!`, and opentelemetry's `Context`.

use std::any::Any;
use std::cell::Cell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ctx_bench_support::{Yields, drive};
use ctx_vars::{Context, ContextVar, FutureExt};

const SIZES: [usize; 4] = [1, 8, 64, 1024];

/// A context with `n` `u64` variables set, and the last of them (the one measured).
fn context_with(n: usize) -> (Context, &'static ContextVar<u64>) {
    context_with_last(n, true)
}

/// The same, with the last variable's flow policy given.
fn context_with_last(n: usize, inherit: bool) -> (Context, &'static ContextVar<u64>) {
    let mut ctx = Context::new();
    let mut last = None;
    for i in 0..n {
        let var = ContextVar::new("bench").inherit(inherit || i + 1 < n);
        let var: &'static ContextVar<u64> = Box::leak(Box::new(var));
        ctx = ctx.with_value(var, i as u64);
        last = Some(var);
    }
    (ctx, last.expect("n > 0"))
}

thread_local! {
    static THREAD_LOCAL: Cell<u64> = const { Cell::new(42) };
}

tokio::task_local! {
    static TASK_LOCAL: u64;
}

/// Eight distinct types: opentelemetry keys its context by type.
mod otel {
    macro_rules! keys {
        ($($name:ident),*) => {
            $(
                #[derive(Debug, Clone, Copy)]
                #[allow(dead_code, reason = "a payload like a real value's; only some are read")]
                pub(crate) struct $name(pub(crate) u64);
            )*
        };
    }
    keys!(K0, K1, K2, K3, K4, K5, K6, K7, Extra);

    /// An opentelemetry context holding eight values.
    pub(crate) fn context_with_8() -> opentelemetry::Context {
        opentelemetry::Context::new()
            .with_value(K0(0))
            .with_value(K1(1))
            .with_value(K2(2))
            .with_value(K3(3))
            .with_value(K4(4))
            .with_value(K5(5))
            .with_value(K6(6))
            .with_value(K7(7))
    }
}

fn get(c: &mut Criterion) {
    let mut group = c.benchmark_group("get");
    for n in SIZES {
        let (mut ctx, var) = context_with(n);
        group.bench_with_input(BenchmarkId::new("ctx", n), &n, |b, _| {
            ctx.run(|| b.iter(|| black_box(var).get()));
        });
    }
    // A variable that spawned tasks do not inherit: its value lives in a map of its own.
    let (mut ctx, var) = context_with_last(8, false);
    group.bench_with_input(BenchmarkId::new("ctx_local", 8), &8, |b, _| {
        ctx.run(|| b.iter(|| black_box(var).get()));
    });
    // Another thread copies and drops the same context all the while, as a spawner
    // handing it to new tasks would: the reads must not slow down.
    let (ctx, var) = context_with(8);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let copier = std::thread::spawn({
        let (ctx, stop) = (ctx.clone(), Arc::clone(&stop));
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..1000 {
                    black_box(ctx.clone());
                }
            }
        }
    });
    group.bench_function("ctx_8_while_another_thread_copies", |b| {
        ctx.clone().run(|| b.iter(|| black_box(var).get()));
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    copier.join().expect("copier thread");
    static UNSET: ContextVar<u64> = ContextVar::with_default("unset", || 42);
    group.bench_function("ctx_default_in_empty_context", |b| {
        Context::new().run(|| b.iter(|| black_box(&UNSET).get()));
    });
    group.bench_function("tokio_task_local", |b| {
        TASK_LOCAL.sync_scope(42, || b.iter(|| black_box(&TASK_LOCAL).get()));
    });
    group.bench_function("thread_local", |b| {
        b.iter(|| black_box(&THREAD_LOCAL).with(Cell::get));
    });
    let otel_cx = otel::context_with_8();
    group.bench_with_input(BenchmarkId::new("otel_map_current", 8), &8, |b, _| {
        let _attached = otel_cx.clone().attach();
        b.iter(|| opentelemetry::Context::map_current(|cx| cx.get::<otel::K7>().map(|k| k.0)));
    });
    group.finish();
}

fn set_reset(c: &mut Criterion) {
    let mut group = c.benchmark_group("set_reset");
    for n in SIZES {
        let (mut ctx, var) = context_with(n);
        group.bench_with_input(BenchmarkId::new("ctx", n), &n, |b, _| {
            ctx.run(|| {
                b.iter(|| {
                    let token = var.set(black_box(7));
                    var.reset(token).unwrap();
                });
            });
        });
    }
    // The floor under any design that shares values between contexts: one `Arc`
    // allocated by `set` and freed by `reset`.
    group.bench_function("floor_arc_alloc_free", |b| {
        b.iter(|| {
            drop(black_box(
                Arc::new(black_box(7u64)) as Arc<dyn Any + Send + Sync>
            ))
        });
    });
    let otel_cx = otel::context_with_8();
    group.bench_with_input(BenchmarkId::new("otel_attach", 8), &8, |b, _| {
        let _attached = otel_cx.clone().attach();
        b.iter(|| {
            let _guard =
                opentelemetry::Context::current_with_value(otel::Extra(black_box(7))).attach();
        });
    });
    group.finish();
}

fn sync_scope(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync_scope");
    let (mut ctx, var) = context_with(8);
    group.bench_with_input(BenchmarkId::new("ctx", 8), &8, |b, _| {
        ctx.run(|| b.iter(|| var.sync_scope(black_box(7), || var.get())));
    });
    group.bench_function("tokio_task_local", |b| {
        b.iter(|| TASK_LOCAL.sync_scope(black_box(7), || TASK_LOCAL.get()));
    });
    group.finish();
}

/// `Context::run`: a context entered and left around a closure that reads from it.
fn run(c: &mut Criterion) {
    let mut group = c.benchmark_group("run");
    let (mut ctx, var) = context_with(8);
    group.bench_with_input(BenchmarkId::new("ctx", 8), &8, |b, _| {
        b.iter(|| ctx.run(|| black_box(var).get()));
    });
    group.finish();
}

fn current(c: &mut Criterion) {
    let mut group = c.benchmark_group("current");
    group.bench_with_input(BenchmarkId::new("ctx", 0), &0, |b, _| {
        Context::new().run(|| b.iter(Context::current));
    });
    for n in SIZES {
        let (mut ctx, _) = context_with(n);
        group.bench_with_input(BenchmarkId::new("ctx", n), &n, |b, _| {
            ctx.run(|| b.iter(Context::current));
        });
    }
    // What a spawn captures: the inheritable part, with one local value left behind.
    let (mut ctx, _) = context_with_last(8, false);
    group.bench_with_input(BenchmarkId::new("ctx_inherited", 8), &8, |b, _| {
        ctx.run(|| b.iter(Context::inherited));
    });
    group.bench_function("thread_local", |b| {
        b.iter(|| black_box(&THREAD_LOCAL).with(Cell::get));
    });
    let otel_cx = otel::context_with_8();
    group.bench_with_input(BenchmarkId::new("otel", 8), &8, |b, _| {
        let _attached = otel_cx.clone().attach();
        b.iter(opentelemetry::Context::current);
    });
    group.finish();
}

fn poll(c: &mut Criterion) {
    let mut group = c.benchmark_group("poll");
    group.bench_function("bare", |b| b.iter(|| drive(Yields(black_box(1000)))));
    let (ctx, _) = context_with(8);
    group.bench_with_input(BenchmarkId::new("with_context", 8), &8, |b, _| {
        b.iter(|| drive(Yields(black_box(1000)).with_context(ctx.clone())));
    });
    group.bench_function("tokio_task_local_scope", |b| {
        b.iter(|| drive(TASK_LOCAL.scope(7, Yields(black_box(1000)))));
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
    targets = get, set_reset, sync_scope, run, current, poll
}
criterion_main!(benches);
