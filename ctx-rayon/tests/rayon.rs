//! Every entry point of ctx-rayon on real rayon pools: each job sees the values of the
//! code that made it, and keeps its own sets to itself.

use std::sync::mpsc;

use ctx_rayon::ThreadPoolExt;
use ctx_vars::{Context, context_var};

#[context_var]
static REQUEST_ID: u64;
#[context_var(inherit = false)]
static LOCAL: u32;

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

#[test]
fn join_halves_see_the_callers_values_and_keep_their_sets() {
    // Four callers at once, each with its own id, 250 joins each: no half may see
    // another caller's id, or its sibling's set.
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            std::thread::spawn(move || {
                Context::new().run(|| {
                    let mut mismatches = 0;
                    for round in 0..250u64 {
                        let id = caller * 1_000 + round;
                        REQUEST_ID.set(id);
                        LOCAL.set(1);
                        let (a, b) = ctx_rayon::join(
                            || (REQUEST_ID.get(), LOCAL.get()),
                            || {
                                REQUEST_ID.set(id + 500);
                                REQUEST_ID.get()
                            },
                        );
                        mismatches += usize::from(a != (Some(id), None));
                        mismatches += usize::from(b != Some(id + 500));
                        mismatches += usize::from(REQUEST_ID.get() != Some(id));
                    }
                    mismatches
                })
            })
        })
        .collect();
    let mismatches: usize = callers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(mismatches, 0);
}

#[test]
fn plain_rayon_loses_the_value_ctx_rayon_keeps_it() {
    Context::new().run(|| {
        REQUEST_ID.set(3);
        let (tx, rx) = mpsc::channel();
        // A private pool: on the global one, a plain job may be stolen by a thread that
        // waits inside another test's ctx job, and see that job's values.
        let pool = pool();
        let plain = tx.clone();
        pool.spawn(move || plain.send(("plain", REQUEST_ID.get())).unwrap());
        pool.ctx_spawn(move || tx.send(("ctx", REQUEST_ID.get())).unwrap());
        let mut seen: Vec<_> = rx.iter().take(2).collect();
        seen.sort();
        assert_eq!(seen, [("ctx", Some(3)), ("plain", None)]);
    });
}

#[test]
fn spawns_take_the_context_at_the_call() {
    Context::new().run(|| {
        let (tx, rx) = mpsc::channel();
        REQUEST_ID.set(10);
        let first = tx.clone();
        ctx_rayon::spawn(move || first.send(REQUEST_ID.get()).unwrap());
        REQUEST_ID.set(11);
        ctx_rayon::spawn_fifo(move || {
            let before = REQUEST_ID.get();
            REQUEST_ID.set(99);
            tx.send(before).unwrap();
        });
        REQUEST_ID.set(12);
        let mut seen: Vec<_> = rx.iter().take(2).collect();
        seen.sort();
        assert_eq!(seen, [Some(10), Some(11)]);
        assert_eq!(REQUEST_ID.get(), Some(12));
    });
}

#[test]
fn scope_jobs_inherit_from_whoever_spawned_them() {
    Context::new().run(|| {
        REQUEST_ID.set(1);
        let (tx, rx) = mpsc::channel();
        ctx_rayon::scope(|s| {
            let outer = tx.clone();
            s.spawn(move |s| {
                outer.send(("job", REQUEST_ID.get())).unwrap();
                REQUEST_ID.set(2);
                // A nested job inherits the job's own set, made before it.
                s.spawn(move |_| outer.send(("nested", REQUEST_ID.get())).unwrap());
            });
            REQUEST_ID.set(3); // the scope's own copy, after the spawn
            let last = tx.clone();
            s.spawn(move |_| last.send(("later", REQUEST_ID.get())).unwrap());
        });
        drop(tx);
        let mut seen: Vec<_> = rx.iter().collect();
        seen.sort();
        assert_eq!(
            seen,
            [("job", Some(1)), ("later", Some(3)), ("nested", Some(2))]
        );
        assert_eq!(REQUEST_ID.get(), Some(1), "the scope's set stayed in it");
    });
}

#[test]
fn a_pool_of_ones_own_carries_the_context() {
    let pool = pool();
    Context::new().run(|| {
        REQUEST_ID.set(20);
        LOCAL.set(5);
        let inside = pool.ctx_install(|| {
            let seen = (REQUEST_ID.get(), LOCAL.get());
            REQUEST_ID.set(21);
            seen
        });
        assert_eq!(inside, (Some(20), None), "inherited values only");
        assert_eq!(REQUEST_ID.get(), Some(20));
        assert_eq!(pool.install(|| REQUEST_ID.get()), None, "plain install");

        let (tx, rx) = mpsc::channel();
        let first = tx.clone();
        pool.ctx_spawn(move || first.send(REQUEST_ID.get()).unwrap());
        REQUEST_ID.set(22);
        let second = tx.clone();
        pool.ctx_spawn_fifo(move || second.send(REQUEST_ID.get()).unwrap());
        REQUEST_ID.set(23);
        pool.ctx_scope(|s| {
            s.spawn(|_| tx.send(REQUEST_ID.get()).unwrap());
        });
        let mut seen: Vec<_> = rx.iter().take(3).collect();
        seen.sort();
        assert_eq!(seen, [Some(20), Some(22), Some(23)]);
    });
}

mod par_iter {
    use ctx_rayon::ParallelIteratorExt;
    use ctx_vars::Context;
    use rayon::prelude::*;

    use super::{LOCAL, REQUEST_ID};

    #[test]
    fn every_item_sees_its_callers_values() {
        // Four callers at once on the global pool, 100 000 items each.
        let callers: Vec<_> = (1..=4u64)
            .map(|caller| {
                std::thread::spawn(move || {
                    Context::new().run(|| {
                        REQUEST_ID.set(caller);
                        LOCAL.set(9);
                        let seen: Vec<(Option<u64>, Option<u32>)> = (0..100_000)
                            .into_par_iter()
                            .in_context()
                            .map(|_| (REQUEST_ID.get(), LOCAL.get()))
                            .collect();
                        let mismatches =
                            seen.iter().filter(|s| **s != (Some(caller), None)).count();
                        let sum: u64 = (0..100_000u64)
                            .into_par_iter()
                            .in_context()
                            .filter(|i| i % 2 == 0)
                            .map(|_| REQUEST_ID.get().unwrap_or(0))
                            .sum();
                        (mismatches, sum == 50_000 * caller)
                    })
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().unwrap(), (0, true));
        }
    }

    #[test]
    fn without_the_adapter_the_pool_threads_see_nothing() {
        Context::new().run(|| {
            REQUEST_ID.set(5);
            // A private pool, as in `plain_rayon_loses_the_value_ctx_rayon_keeps_it`.
            let seen: Vec<Option<u64>> = super::pool().install(|| {
                (0..1_000)
                    .into_par_iter()
                    .map(|_| REQUEST_ID.get())
                    .collect()
            });
            assert!(
                seen.iter().all(Option::is_none),
                "the gap the adapter closes"
            );
        });
    }

    #[test]
    fn sets_in_items_never_reach_the_caller() {
        Context::new().run(|| {
            REQUEST_ID.set(1);
            let seen: Vec<u64> = (0..10_000u64)
                .into_par_iter()
                .in_context()
                .map(|i| {
                    let before = REQUEST_ID.get().unwrap();
                    REQUEST_ID.set(1_000 + i);
                    before
                })
                .collect();
            assert_eq!(REQUEST_ID.get(), Some(1));
            // Each value seen is the caller's or an earlier item's of the same piece.
            assert!(seen.iter().all(|&s| s == 1 || (1_000..11_000).contains(&s)));
            // One item's value, scoped to it alone.
            let scoped: Vec<Option<u64>> = (0..1_000u64)
                .into_par_iter()
                .in_context()
                .map(|i| REQUEST_ID.sync_scope(i, || REQUEST_ID.get()))
                .collect();
            assert!(scoped.iter().enumerate().all(|(i, s)| *s == Some(i as u64)));
        });
    }

    #[test]
    fn for_each_and_fold_run_in_the_context_too() {
        Context::new().run(|| {
            REQUEST_ID.set(4);
            let (tx, rx) = std::sync::mpsc::channel();
            (0..1_000)
                .into_par_iter()
                .in_context()
                .for_each_with(tx, |tx, _| tx.send(REQUEST_ID.get()).unwrap());
            assert!(rx.iter().all(|id| id == Some(4)));
            let total = (0..1_000)
                .into_par_iter()
                .in_context()
                .fold(|| 0u64, |acc, _| acc + REQUEST_ID.get().unwrap())
                .sum::<u64>();
            assert_eq!(total, 4_000);
        });
    }
}
