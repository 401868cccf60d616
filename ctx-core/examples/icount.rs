//! Instruction counts of the hot paths, for `valgrind --tool=callgrind`: repeatable on a
//! shared machine where criterion's times swing by ±15 %. See BENCHMARKS.md.
//!
//! `icount <op> <n>` runs `op` `n` times in a context holding 8 inherited variables and
//! one local (`inherit(false)`) one. The cost of one op is the difference between the
//! counts for two values of `n`, divided by the difference of the `n`s.

use std::hint::black_box;

use ctx_core::{Context, ContextVar, FutureExt};

#[path = "../benches/support/yields.rs"]
mod yields;
use yields::{Yields, drive};

fn spawn_and_join(n: u32, spawn: impl Fn() -> tokio::task::JoinHandle<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let handles: Vec<_> = (0..n).map(|_| spawn()).collect();
        for handle in handles {
            handle.await.expect("task");
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(op), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<u32>())) else {
        eprintln!(
            "usage: icount <get|set|get_local|current|inherited|poll|bare|spawn|spawn_raw> <n>"
        );
        std::process::exit(2);
    };
    let leak = |var: ContextVar<u64>| -> &'static ContextVar<u64> { Box::leak(Box::new(var)) };
    let vars: Vec<_> = (0..8).map(|_| leak(ContextVar::new("v"))).collect();
    let local = leak(ContextVar::new("local").inherit(false));
    let mut ctx = Context::new().with_value(local, 8);
    for (i, var) in vars.iter().enumerate() {
        ctx = ctx.with_value(var, i as u64);
    }
    let last = vars[7];
    ctx.run(|| match op.as_str() {
        "get" => (0..n).for_each(|_| {
            black_box(black_box(last).get());
        }),
        "set" => (0..n).for_each(|i| drop(black_box(last).set(u64::from(i)))),
        "get_local" => (0..n).for_each(|_| {
            black_box(black_box(local).get());
        }),
        "current" => (0..n).for_each(|_| drop(black_box(Context::current()))),
        "inherited" => (0..n).for_each(|_| drop(black_box(Context::inherited()))),
        "poll" => drive(Yields(n).with_context(Context::current())),
        "bare" => drive(Yields(n)),
        // What `ctx_tokio::spawn` does, against `tokio::spawn`, on a current-thread
        // runtime: n tasks spawned, then joined.
        "spawn" => spawn_and_join(n, || tokio::spawn(async {}.in_inherited_context())),
        "spawn_raw" => spawn_and_join(n, || tokio::spawn(async {})),
        other => panic!("unknown op {other:?}"),
    });
}
