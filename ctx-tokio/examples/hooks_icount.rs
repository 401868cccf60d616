//! Instruction counts of `ctx_tokio::hooks`, for `valgrind --tool=callgrind`: repeatable
//! where the benches' times swing. See BENCHMARKS.md.
//!
//! `hooks_icount <raw|empty|isolate|inherit|request> <poll|spawn> <n>` runs, on a current-thread
//! runtime with 8 variables set where tasks are spawned (`empty`: with four hooks that
//! do nothing, the floor of any hook; `request`: `inherit`, with that context made
//! endable, as `ContextLayer` makes a request's), either one task yielding `n`
//! times (`poll`) or `n` trivial tasks spawned and joined (`spawn`). The cost of one poll
//! or task is the difference between the counts for two `n`s, divided by the difference
//! of the `n`s. Built only with `--cfg tokio_unstable` and the `hooks` feature.

#[cfg(all(feature = "hooks", tokio_unstable))]
fn main() {
    use ctx_tokio::hooks::TaskHooks;
    use ctx_tokio::{Context, ContextVar, FutureExt};

    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(op), Some(Ok(n))) = (
        args.get(1),
        args.get(2),
        args.get(3).map(|n| n.parse::<u32>()),
    ) else {
        eprintln!("usage: hooks_icount <raw|empty|isolate|inherit|request> <poll|spawn> <n>");
        std::process::exit(2);
    };
    let mut builder = tokio::runtime::Builder::new_current_thread();
    match mode.as_str() {
        "raw" => {}
        // tokio's own cost of four hooks that do nothing: the floor of any hook.
        "empty" => drop(
            builder
                .on_task_spawn(|_| {})
                .on_before_task_poll(|_| {})
                .on_after_task_poll(|_| {})
                .on_task_terminate(|_| {}),
        ),
        "isolate" => drop(TaskHooks::isolate().install(&mut builder)),
        "inherit" | "request" => drop(TaskHooks::inherit().install(&mut builder)),
        other => panic!("unknown mode {other:?}"),
    }
    let rt = builder.build().expect("runtime");
    let ctx = (0..8).fold(Context::new(), |ctx, i| {
        let var: &'static ContextVar<u64> = Box::leak(Box::new(ContextVar::new("v")));
        ctx.with_value(var, i)
    });
    // `request`: spawned from an endable context, as in a request behind `ContextLayer`.
    let (ctx, _end) = match mode.as_str() {
        "request" => {
            let (ctx, end) = ctx.endable();
            (ctx, Some(end))
        }
        _ => (ctx, None),
    };
    // The root future runs in the context with 8 variables, which is what the spawns
    // see; tokio polls the tasks outside it, in the thread's own (empty) context, as on
    // a worker thread or under `ctx_tokio::block_on`.
    rt.block_on(
        async {
            match op.as_str() {
                "poll" => tokio::spawn(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                })
                .await
                .expect("task"),
                "spawn" => {
                    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
                    for handle in handles {
                        handle.await.expect("task");
                    }
                }
                other => panic!("unknown op {other:?}"),
            }
        }
        .with_context(ctx),
    );
}

#[cfg(not(all(feature = "hooks", tokio_unstable)))]
fn main() {
    eprintln!("needs `--features hooks` and RUSTFLAGS=\"--cfg tokio_unstable\"");
}
