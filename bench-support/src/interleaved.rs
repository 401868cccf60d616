//! Variants benchmarked side by side, in rotating order: shared by the spawn, hooks and
//! log-line benches (`bench-support/benches/spawn.rs`, `ctx-tokio/benches/hooks.rs`,
//! `ctx-tracing/benches/format.rs`).

use std::time::{Duration, Instant};

use criterion::Criterion;

/// Benchmarks each of `runs` under its name, but runs all of them in every iteration,
/// in rotating order, timing only its own. Runtimes on a shared 2-core machine drift by
/// more than the few percent measured here, and whichever variant runs first pays for
/// the allocator's growth; interleaving puts every variant under the same conditions, so
/// their ratios hold even when absolute times move.
///
/// Each run performs `batch` operations; times are reported per operation.
pub fn interleaved(c: &mut Criterion, group: &str, batch: u32, runs: &[(&str, &dyn Fn())]) {
    let mut group = c.benchmark_group(group);
    for (own, (name, _)) in runs.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for iteration in 0..iters as usize {
                    for step in 0..runs.len() {
                        let which = (step + iteration) % runs.len();
                        let start = Instant::now();
                        (runs[which].1)();
                        if which == own {
                            elapsed += start.elapsed();
                        }
                    }
                }
                elapsed / batch
            });
        });
    }
    group.finish();
}
