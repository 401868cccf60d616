//! What `ctx_tokio::hooks` costs, against the same runtime without hooks, in one run:
//! per poll (one task yielding 1 000 times), and per task (100 000 trivial tasks spawned
//! and joined). Current-thread runtimes: on the 2-core machine a multi-threaded
//! runtime's parking and stealing swings by more than what is measured here. The root
//! future runs in a context with 8 variables, which the spawns see; tokio polls the
//! tasks outside it, in the thread's own empty context, as on a worker thread.
//!
//! Built only with `--cfg tokio_unstable` and the `hooks` feature:
//! `RUSTFLAGS="--cfg tokio_unstable" cargo bench -p ctx-tokio --features hooks --bench hooks`
//! (in a target directory of its own: `--target-dir target/unstable`).

#[cfg(all(feature = "hooks", tokio_unstable))]
mod bench {
    use std::hint::black_box;
    use std::time::Duration;

    use criterion::{Criterion, criterion_group};

    use ctx_bench_support::interleaved;
    use ctx_tokio::hooks::TaskHooks;
    use ctx_tokio::{Context, ContextVar, FutureExt};
    use tokio::runtime::{Builder, Runtime};

    const POLLS: u32 = 1_000;
    const TASKS: usize = 100_000;

    fn runtime(hooks: Option<TaskHooks>) -> Runtime {
        let mut builder = Builder::new_current_thread();
        if let Some(hooks) = hooks {
            hooks.install(&mut builder);
        }
        builder.build().expect("runtime")
    }

    /// A context with 8 `u64` variables set: what `inherit` copies into every task.
    fn context_with_8() -> Context {
        (0..8).fold(Context::new(), |ctx, i| {
            let var: &'static ContextVar<u64> = Box::leak(Box::new(ContextVar::new("bench")));
            ctx.with_value(var, i)
        })
    }

    /// tokio's own cost of four hooks that do nothing: the floor of any hook.
    fn empty_hooks() -> Runtime {
        Builder::new_current_thread()
            .on_task_spawn(|_| {})
            .on_before_task_poll(|_| {})
            .on_after_task_poll(|_| {})
            .on_task_terminate(|_| {})
            .build()
            .expect("runtime")
    }

    /// The variants' runtimes: no hooks, empty hooks, `isolate`, `inherit` (twice: once
    /// for `request`, spawning from an endable context).
    fn runtimes() -> [Runtime; 5] {
        [
            runtime(None),
            empty_hooks(),
            runtime(Some(TaskHooks::isolate())),
            runtime(Some(TaskHooks::inherit())),
            runtime(Some(TaskHooks::inherit())),
        ]
    }

    /// Runs `f` with `ctx`, or (`endable`) with a copy made endable, as `ContextLayer`
    /// makes a request's, and ends it after: what a request's tasks cost.
    fn with_ctx(ctx: &Context, endable: bool, f: impl FnOnce(Context)) {
        if endable {
            let (ctx, end) = ctx.clone().endable();
            f(ctx);
            drop(end);
        } else {
            f(ctx.clone());
        }
    }

    pub(super) fn poll(c: &mut Criterion) {
        let ctx = context_with_8();
        let [raw, empty, isolate, inherit, request] = runtimes();
        let run = |rt: &Runtime, endable: bool| {
            with_ctx(&ctx, endable, |ctx| {
                rt.block_on(
                    async {
                        // One spawned task: the root future gets no hooks.
                        tokio::spawn(async {
                            for _ in 0..black_box(POLLS) {
                                tokio::task::yield_now().await;
                            }
                        })
                        .await
                        .expect("task");
                    }
                    .with_context(ctx),
                );
            });
        };
        let (raw, empty) = (|| run(&raw, false), || run(&empty, false));
        let (isolate, inherit) = (|| run(&isolate, false), || run(&inherit, false));
        let request = || run(&request, true);
        interleaved(
            c,
            "hooks_poll",
            1,
            &[
                ("raw", &raw),
                ("empty_hooks", &empty),
                ("isolate", &isolate),
                ("inherit", &inherit),
                ("inherit_request", &request),
            ],
        );
    }

    pub(super) fn spawn(c: &mut Criterion) {
        let ctx = context_with_8();
        let [raw, empty, isolate, inherit, request] = runtimes();
        let run = |rt: &Runtime, endable: bool| {
            with_ctx(&ctx, endable, |ctx| {
                rt.block_on(
                    async {
                        let handles: Vec<_> = (0..TASKS).map(|_| tokio::spawn(async {})).collect();
                        for handle in handles {
                            handle.await.expect("task");
                        }
                    }
                    .with_context(ctx),
                );
            });
        };
        let (raw, empty) = (|| run(&raw, false), || run(&empty, false));
        let (isolate, inherit) = (|| run(&isolate, false), || run(&inherit, false));
        let request = || run(&request, true);
        interleaved(
            c,
            "hooks_spawn",
            1,
            &[
                ("raw", &raw),
                ("empty_hooks", &empty),
                ("isolate", &isolate),
                ("inherit", &inherit),
                ("inherit_request", &request),
            ],
        );
    }

    fn config() -> Criterion {
        Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }

    criterion_group! {
        name = polls;
        config = config();
        targets = poll
    }

    // Each spawn iteration runs all five variants (100 000 tasks each): ten samples keep
    // the group to about a minute.
    criterion_group! {
        name = spawns;
        config = config().sample_size(10);
        targets = spawn
    }
}

#[cfg(all(feature = "hooks", tokio_unstable))]
criterion::criterion_main!(bench::polls, bench::spawns);

#[cfg(not(all(feature = "hooks", tokio_unstable)))]
fn main() {
    eprintln!("the hooks bench needs `--features hooks` and RUSTFLAGS=\"--cfg tokio_unstable\"");
}
