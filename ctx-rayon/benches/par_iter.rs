//! `in_context()` against plain rayon: a `par_iter().map()` over 1 M items, summed.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ctx_rayon::ParallelIteratorExt;
use ctx_vars::{Context, ContextVar};
use rayon::prelude::*;

const ITEMS: u64 = 1_000_000;

/// A little work per item, as a real map closure does some.
fn work(i: u64) -> u64 {
    black_box(i)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

fn par_iter(c: &mut Criterion) {
    static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
    let mut group = c.benchmark_group("par_iter_map_1m");
    let mut context = Context::new().with_value(&REQUEST_ID, 7);
    context.run(|| {
        group.bench_function("rayon", |b| {
            b.iter(|| (0..ITEMS).into_par_iter().map(work).sum::<u64>());
        });
        group.bench_function("ctx_in_context", |b| {
            b.iter(|| {
                (0..ITEMS)
                    .into_par_iter()
                    .in_context()
                    .map(work)
                    .sum::<u64>()
            });
        });
        // For scale: every item also reads a variable.
        group.bench_function("ctx_in_context_get", |b| {
            b.iter(|| {
                (0..ITEMS)
                    .into_par_iter()
                    .in_context()
                    .map(|i| work(i) ^ REQUEST_ID.get().unwrap_or(0))
                    .sum::<u64>()
            });
        });
    });
    group.finish();
}

criterion_group!(benches, par_iter);
criterion_main!(benches);
