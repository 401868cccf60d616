//! What carrying the context costs a spawn: 100 000 trivial tasks spawned and joined,
//! raw and through the ctx adapter (with 8 variables set), side by side in one run, on
//! tokio (2 workers), async-std and smol, with opentelemetry's `with_current_context`
//! and tokio's `task_local` `scope` as peers.
//!
//! The spawning loop itself runs as a task on the runtime, as a server's accept loop
//! would: driving it from a `block_on` thread as well puts three busy threads on the
//! two cores, and the noise that adds is larger than the differences measured.
//!
//! Run with `cargo xtask bench`, which prints the ratios and writes BENCHMARKS.md.

use std::future::Future;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use ctx_bench_support::interleaved;
use ctx_vars::{Context, ContextVar};

const TASKS: usize = 100_000;

/// The spawning loop, boxed so that each variant runs as a task of one type.
type Run = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A context with 8 `u64` variables set.
fn context_with_8() -> Context {
    (0..8).fold(Context::new(), |ctx, i| {
        let var: &'static ContextVar<u64> = Box::leak(Box::new(ContextVar::new("bench")));
        ctx.with_value(var, i)
    })
}

tokio::task_local! {
    static TASK_LOCAL: u64;
}

/// Spawns `TASKS` trivial tasks with `spawn` and joins them all, in order.
async fn spawn_and_join<H: Future>(spawn: impl Fn() -> H) {
    let handles: Vec<H> = (0..TASKS).map(|_| spawn()).collect();
    for handle in handles {
        black_box(handle.await);
    }
}

fn tokio_spawn(c: &mut Criterion) {
    use opentelemetry::context::FutureExt as _;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let on_worker = |run: Run| rt.block_on(rt.spawn(run)).unwrap();
    // opentelemetry keys values by type: eight types, eight values.
    let otel = opentelemetry::Context::new()
        .with_value(1u8)
        .with_value(2u16)
        .with_value(3u32)
        .with_value(4u64)
        .with_value(5i8)
        .with_value(6i16)
        .with_value(7i32)
        .with_value(8i64);
    let raw = || on_worker(Box::pin(spawn_and_join(|| tokio::spawn(async {}))));
    let ctx = || {
        let run = spawn_and_join(|| ctx_tokio::spawn(async {}));
        on_worker(Box::pin(context_with_8().scope(run)));
    };
    let otel = || {
        let run = spawn_and_join(|| tokio::spawn(async {}.with_current_context()));
        on_worker(Box::pin(run.with_context(otel.clone())));
    };
    let task_local = || {
        on_worker(Box::pin(spawn_and_join(|| {
            tokio::spawn(TASK_LOCAL.scope(7, async {}))
        })))
    };
    interleaved(
        c,
        "spawn_tokio",
        1,
        &[
            ("raw", &raw),
            ("ctx", &ctx),
            ("otel_with_current_context", &otel),
            ("tokio_task_local_scope", &task_local),
        ],
    );
}

/// The same on one thread: no stealing, no parking, no reference count shared between
/// cores; what is left is the per-task work itself.
fn tokio_current_thread_spawn(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let raw = || rt.block_on(spawn_and_join(|| tokio::spawn(async {})));
    let ctx = || {
        let run = spawn_and_join(|| ctx_tokio::spawn(async {}));
        rt.block_on(context_with_8().scope(run));
    };
    interleaved(
        c,
        "spawn_tokio_current_thread",
        1,
        &[("raw", &raw), ("ctx", &ctx)],
    );
}

fn smol_spawn(c: &mut Criterion) {
    let raw = || smol::block_on(smol::spawn(spawn_and_join(|| smol::spawn(async {}))));
    let ctx = || {
        let run = spawn_and_join(|| ctx_smol::spawn(async {}));
        smol::block_on(smol::spawn(context_with_8().scope(run)));
    };
    interleaved(c, "spawn_smol", 1, &[("raw", &raw), ("ctx", &ctx)]);
}

fn async_std_spawn(c: &mut Criterion) {
    let on_worker = |run: Run| async_std::task::block_on(async_std::task::spawn(run));
    let raw = || {
        on_worker(Box::pin(spawn_and_join(
            || async_std::task::spawn(async {}),
        )))
    };
    let ctx = || {
        let run = spawn_and_join(|| ctx_async_std::spawn(async {}));
        on_worker(Box::pin(context_with_8().scope(run)));
    };
    interleaved(c, "spawn_async_std", 1, &[("raw", &raw), ("ctx", &ctx)]);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = tokio_spawn, tokio_current_thread_spawn, smol_spawn, async_std_spawn
}
criterion_main!(benches);
