//! Instruction counts of the hot paths, for `valgrind --tool=callgrind`: repeatable on a
//! shared machine where criterion's times swing by ±15 %. See BENCHMARKS.md.
//!
//! `icount <op> <n>` runs `op` `n` times in a context holding 8 inherited variables and
//! one local (`inherit(false)`) one. The cost of one op is the difference between the
//! counts for two values of `n`, divided by the difference of the `n`s.

use std::hint::black_box;

use ctx_vars::{Context, ContextVar, FutureExt};

use ctx_bench_support::{Yields, drive};

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
            "usage: icount <get|get_deep|set|set_reset|set_reset_local|set_reset_deep|get_local|current|inherited|run|sync_scope|enter|poll|bare|spawn|spawn_raw> <n>"
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
    let op = match op.as_str() {
        "get" => get,
        "get_deep" => get_deep,
        "set" => set,
        "set_reset" => set_reset,
        "get_local" => get_local,
        "set_reset_local" => set_reset_local,
        "set_reset_deep" => set_reset_deep,
        "current" => current,
        "inherited" => inherited,
        "run" => run,
        "sync_scope" => sync_scope,
        "enter" => enter,
        "poll" => poll,
        "bare" => bare,
        "spawn" => spawn,
        "spawn_raw" => spawn_raw,
        other => panic!("unknown op {other:?}"),
    };
    ctx.run(|| op(n, last, local));
}

// One function an op, out of line: each loop is compiled on its own, so that adding an
// op (or changing another's code) does not change how the others are compiled.
type Var = &'static ContextVar<u64>;

#[inline(never)]
fn get(n: u32, last: Var, _: Var) {
    (0..n).for_each(|_| {
        black_box(black_box(last).get());
    });
}

/// A context of 1 024 variables, and the last of them, two levels down the map: made
/// once per run, a cost the difference of two runs leaves out.
fn deep_context() -> (Context, Var) {
    let mut deep = Context::new();
    let mut last = None;
    for i in 0..1024 {
        let var: Var = Box::leak(Box::new(ContextVar::new("deep")));
        deep = deep.with_value(var, i);
        last = Some(var);
    }
    (deep, last.expect("1 024 variables"))
}

/// `get` of a variable two levels down.
#[inline(never)]
fn get_deep(n: u32, _: Var, _: Var) {
    let (mut deep, last) = deep_context();
    deep.run(|| get(n, last, last));
}

/// `set` + `reset` of a variable two levels down.
#[inline(never)]
fn set_reset_deep(n: u32, _: Var, _: Var) {
    let (mut deep, last) = deep_context();
    deep.run(|| set_reset(n, last, last));
}

/// `set` + `reset` of a variable spawned tasks do not inherit.
#[inline(never)]
fn set_reset_local(n: u32, _: Var, local: Var) {
    set_reset(n, local, local);
}

#[inline(never)]
fn set(n: u32, last: Var, _: Var) {
    (0..n).for_each(|i| drop(black_box(last).set(u64::from(i))));
}

#[inline(never)]
fn set_reset(n: u32, last: Var, _: Var) {
    (0..n).for_each(|i| {
        let token = black_box(last).set(u64::from(i));
        black_box(last)
            .reset(token)
            .expect("same variable, same context");
    });
}

#[inline(never)]
fn get_local(n: u32, _: Var, local: Var) {
    (0..n).for_each(|_| {
        black_box(black_box(local).get());
    });
}

#[inline(never)]
fn current(n: u32, _: Var, _: Var) {
    (0..n).for_each(|_| drop(black_box(Context::current())));
}

#[inline(never)]
fn inherited(n: u32, _: Var, _: Var) {
    (0..n).for_each(|_| drop(black_box(Context::inherited())));
}

#[inline(never)]
fn run(n: u32, last: Var, _: Var) {
    (0..n).for_each(|_| {
        black_box(Context::new().run(|| black_box(last).get()));
    });
}

#[inline(never)]
fn sync_scope(n: u32, last: Var, _: Var) {
    (0..n).for_each(|i| {
        black_box(black_box(last).sync_scope(u64::from(i), || black_box(last).get()));
    });
}

/// A context entered and left across two calls, as task hooks do.
#[inline(never)]
fn enter(n: u32, last: Var, _: Var) {
    (0..n).for_each(|_| {
        let entry = black_box(Context::new()).enter();
        black_box(black_box(last).get());
        drop(black_box(entry.leave()));
    });
}

#[inline(never)]
fn poll(n: u32, _: Var, _: Var) {
    drive(Yields(n).with_context(Context::current()));
}

#[inline(never)]
fn bare(n: u32, _: Var, _: Var) {
    drive(Yields(n));
}

/// What `ctx_tokio::spawn` does, against `tokio::spawn`, on a current-thread runtime: n
/// tasks spawned, then joined.
#[inline(never)]
fn spawn(n: u32, _: Var, _: Var) {
    spawn_and_join(n, || tokio::spawn(async {}.in_inherited_context()));
}

#[inline(never)]
fn spawn_raw(n: u32, _: Var, _: Var) {
    spawn_and_join(n, || tokio::spawn(async {}));
}
