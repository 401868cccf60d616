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
        let plain = tx.clone();
        rayon::spawn(move || plain.send(("plain", REQUEST_ID.get())).unwrap());
        ctx_rayon::spawn(move || tx.send(("ctx", REQUEST_ID.get())).unwrap());
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
