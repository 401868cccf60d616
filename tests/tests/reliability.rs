//! Reliability: re-entrant user code, value lifetimes, thread teardown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use ctx_tests::{Tracked, fresh};
use ctx_vars::{Context, ContextVar, FutureExt, ResetError};

static VALUE: ContextVar<Tracked> = ContextVar::new("value");
static PROBE: ContextVar<u32> = ContextVar::new("probe");
static PROBE_WITH_DEFAULT: ContextVar<u32> = ContextVar::with_default("probe_with_default", || 7);

/// A value whose `Drop` reads and writes variables on the same thread.
fn reentrant_value(drops: &Arc<AtomicUsize>, seen: mpsc::Sender<Option<u32>>) -> Tracked {
    Tracked::on_drop(drops, move || {
        let before = PROBE.get();
        let token = PROBE.set(before.unwrap_or(0) + 100);
        PROBE.reset(token).unwrap();
        Context::new().run(|| PROBE.set(1));
        seen.send(before).unwrap();
    })
}

#[test]
fn a_values_drop_may_get_and_set_on_every_path_that_drops_it() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = mpsc::channel();
        PROBE.set(5);

        // Replaced by `set`: the old value travels in the token.
        let token = VALUE.set(reentrant_value(&drops, tx.clone()));
        let token2 = VALUE.set(reentrant_value(&drops, tx.clone()));
        assert!(token2.old_value().is_some());
        drop(token2);
        assert_eq!(seen.recv().unwrap(), Some(5));

        // Displaced by `reset`.
        VALUE.reset(token).unwrap();
        assert_eq!(seen.recv().unwrap(), Some(5));

        // Dropped with its context, after `run` returns.
        let mut ctx = Context::new().with_value(&PROBE, 6);
        ctx.run(|| VALUE.set(reentrant_value(&drops, tx.clone())));
        drop(ctx);
        assert_eq!(
            seen.recv().unwrap(),
            Some(5),
            "dropped in the caller's context"
        );

        // Replaced through the builder.
        let ctx = Context::new().with_value(&VALUE, reentrant_value(&drops, tx.clone()));
        let ctx = ctx.with_value(&VALUE, Tracked::new(&drops));
        assert_eq!(seen.recv().unwrap(), Some(5));
        drop(ctx);

        // A rejected token's old value.
        VALUE.set(reentrant_value(&drops, tx.clone()));
        let token = VALUE.set(Tracked::new(&drops));
        assert_eq!(
            Context::new().run(|| VALUE.reset(token)),
            Err(ResetError::WrongContext)
        );
        assert_eq!(
            seen.recv().unwrap(),
            None,
            "dropped where the reset was refused"
        );

        assert_eq!(PROBE.get(), Some(5));
        assert_eq!(drops.load(Ordering::SeqCst), 6);
    });
}

#[test]
fn values_are_dropped_when_the_last_context_holding_them_goes() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut ctx = Context::new();
        ctx.run(|| VALUE.set(Tracked::new(&drops)));
        let copies: Vec<Context> = (0..10).map(|_| ctx.clone()).collect();
        let task = ctx.clone().scope(std::future::ready(()));
        drop(ctx);
        drop(copies);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "the future's context still holds it"
        );
        drop(task);
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        // Values in the thread's own context go when they are replaced or reset.
        let token = VALUE.set(Tracked::new(&drops));
        let token2 = VALUE.set(Tracked::new(&drops));
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "token2 holds the old value"
        );
        VALUE.reset(token).unwrap();
        assert_eq!(
            drops.load(Ordering::SeqCst),
            2,
            "the reset value is dropped"
        );
        drop(token2);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            3,
            "the old value went with its token"
        );
    });
    // `fresh`'s context, holding the first set value, is gone now.
}

#[test]
fn nothing_leaks_from_a_fresh_context() {
    let drops = Arc::new(AtomicUsize::new(0));
    fresh(|| {
        VALUE.set(Tracked::new(&drops));
        VALUE.set(Tracked::new(&drops));
        let _snapshot = Context::current();
    });
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}

#[test]
fn a_thread_local_being_torn_down_reads_defaults_and_never_panics() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn({
            let drops = Arc::clone(&drops);
            move || {
                PROBE.set(1);
                // This value lives in the thread's base context until the thread exits,
                // so its `Drop` runs while that context is being destroyed.
                VALUE.set(Tracked::on_drop(&drops, move || {
                    let report = (
                        PROBE.get(),
                        PROBE_WITH_DEFAULT.get(),
                        PROBE.try_get().is_err(),
                        PROBE.try_set(2).is_err(),
                        Context::try_current().is_err(),
                        Context::current().len(),
                        PROBE.with(|v| v.copied()),
                    );
                    tx.send(report).unwrap();
                }));
            }
        });
        thread.join().unwrap();
        let report = rx.recv().unwrap();
        assert_eq!(report, (None, Some(7), true, true, true, 0, None));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn set_run_scope_and_poll_during_teardown_degrade_quietly() {
    fresh(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let token = PROBE.set(1);
            let drops = Arc::new(AtomicUsize::new(0));
            // Runs while the thread's context is destroyed: before, a `set` here panicked
            // inside a thread-local destructor, which aborts the process.
            VALUE.set(Tracked::on_drop(&drops, move || {
                let reset = PROBE.reset(token);
                let late = PROBE.set(3);
                let late_reset = PROBE.reset(late);
                let ran = Context::new().with_value(&PROBE, 4).run(|| PROBE.get());
                let scoped = PROBE.sync_scope(5, || PROBE.get());
                let polled = ctx_tests::block_on(
                    async {
                        PROBE.set(6);
                        6
                    }
                    .in_current_context(),
                );
                tx.send((reset, late_reset, ran, scoped, polled)).unwrap();
            }));
        })
        .join()
        .expect("the thread exits normally");
        let report = rx.recv().unwrap();
        assert_eq!(
            report,
            (
                Err(ResetError::ThreadExiting),
                Err(ResetError::ThreadExiting),
                None,
                None,
                6
            )
        );
    });
}

#[test]
fn a_thread_local_destructor_may_enter_contexts_after_ctx_is_gone() {
    struct Late(mpsc::Sender<(Option<u32>, u32)>);
    impl Drop for Late {
        fn drop(&mut self) {
            let ran = Context::new().with_value(&PROBE, 1).run(|| {
                PROBE.set(2);
                PROBE.get()
            });
            let polled = ctx_tests::block_on(PROBE.scope(3, async { 3 }));
            let _ = self.0.send((ran, polled));
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    fresh(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Registered first, so destroyed after ctx's own thread-local (destructors
            // run in reverse order of registration).
            LATE.with(|late| *late.borrow_mut() = Some(Late(tx)));
            PROBE.set(9);
        })
        .join()
        .expect("the thread exits normally");
        let (ran, polled) = rx.recv().unwrap();
        // ctx's thread-local is gone by now: `run` ran its closure without the context,
        // where the `set` was dropped and the `get` found nothing. Before, it aborted.
        assert_eq!(ran, None);
        assert_eq!(polled, 3);
    });
}

#[test]
fn all_a_thread_leaves_in_its_context_is_freed_when_it_exits() {
    type Case = fn(&Arc<AtomicUsize>);
    // What each case does on a thread of its own, and how many values it makes.
    let cases: [(&str, Case, usize); 5] = [
        (
            "a set in the thread's own context",
            |drops| {
                VALUE.set(Tracked::new(drops));
            },
            1,
        ),
        (
            "a set, then scopes, runs and polls that end",
            |drops| {
                VALUE.set(Tracked::new(drops));
                VALUE.sync_scope(Tracked::new(drops), || PROBE.set(1));
                Context::new()
                    .with_value(&VALUE, Tracked::new(drops))
                    .run(|| PROBE.set(2));
                ctx_tests::block_on(VALUE.scope(Tracked::new(drops), async { PROBE.set(3) }));
            },
            4,
        ),
        (
            "only reads and frames: nothing to free",
            |_| {
                assert_eq!(PROBE.get(), None);
                Context::new()
                    .with_value(&PROBE, 1)
                    .run(|| assert_eq!(PROBE.get(), Some(1)));
            },
            0,
        ),
        (
            "an entry never left: its context, and the one it swapped out",
            |drops| {
                VALUE.set(Tracked::new(drops));
                let ctx = Context::new().with_value(&VALUE, Tracked::new(drops));
                std::mem::forget(ctx.enter());
            },
            2,
        ),
        (
            "a first write while the thread's other thread-locals are destroyed",
            |drops| {
                struct Late(Arc<AtomicUsize>);
                impl Drop for Late {
                    fn drop(&mut self) {
                        VALUE.set(Tracked::new(&self.0));
                        assert!(VALUE.with(|value| value.is_some()), "the set took effect");
                    }
                }
                thread_local! {
                    static LATE: std::cell::RefCell<Option<Late>> =
                        const { std::cell::RefCell::new(None) };
                }
                LATE.with(|late| *late.borrow_mut() = Some(Late(Arc::clone(drops))));
            },
            1,
        ),
    ];
    fresh(|| {
        for (case, leave, made) in cases {
            let drops = Arc::new(AtomicUsize::new(0));
            let mine = Arc::clone(&drops);
            std::thread::spawn(move || leave(&mine))
                .join()
                .expect("the thread exits normally");
            // Each value holds a count of `drops`: none may be left alive.
            assert_eq!(
                Arc::strong_count(&drops),
                1,
                "{case}: a value outlived its thread"
            );
            assert_eq!(
                drops.load(Ordering::SeqCst),
                made,
                "{case}: each value dropped once"
            );
        }
    });
}

#[test]
fn setting_from_a_clone_impl_during_get_panics_with_advice() {
    #[derive(Debug)]
    struct Meddler;
    impl Clone for Meddler {
        fn clone(&self) -> Self {
            PROBE.set(1);
            Meddler
        }
    }
    static MEDDLER: ContextVar<Meddler> = ContextVar::new("meddler");
    fresh(|| {
        MEDDLER.set(Meddler);
        let panic = std::panic::catch_unwind(|| MEDDLER.get()).unwrap_err();
        let message = panic.downcast_ref::<&str>().unwrap();
        assert!(
            message.contains("Clone") && message.contains("ContextVar::with"),
            "{message}"
        );
        // The thread's context is intact and usable.
        assert!(MEDDLER.with(|m| m.is_some()));
        PROBE.set(2);
        assert_eq!(PROBE.get(), Some(2));
    });
}

#[test]
fn reading_from_a_clone_impl_during_get_is_fine() {
    #[derive(Debug)]
    struct Reader(Option<u32>);
    impl Clone for Reader {
        fn clone(&self) -> Self {
            Reader(PROBE.get())
        }
    }
    static READER: ContextVar<Reader> = ContextVar::new("reader");
    fresh(|| {
        PROBE.set(4);
        READER.set(Reader(None));
        assert_eq!(READER.get().unwrap().0, Some(4));
    });
}

/// A value whose `Drop` panics when armed.
#[derive(Debug)]
struct Bomb(bool);

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.0 {
            panic!("bomb");
        }
    }
}

static BOMB: ContextVar<Bomb> = ContextVar::new("bomb");

/// Runs `f`, which must panic with the bomb, then checks that the thread's context is
/// consistent and fully usable.
fn explodes(f: impl FnOnce()) {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    assert_eq!(*caught.unwrap_err().downcast::<&str>().unwrap(), "bomb");
    assert_eq!(PROBE.get(), Some(3));
    let token = PROBE.set(77);
    assert_eq!(PROBE.get(), Some(77));
    PROBE.reset(token).unwrap();
    Context::new().run(|| PROBE.set(1));
    assert_eq!(PROBE.get(), Some(3));
}

#[test]
fn a_panicking_drop_leaves_the_context_consistent_on_every_path() {
    fresh(|| {
        PROBE.set(3);

        // Displaced by `reset`: the reset has happened.
        let token = BOMB.set(Bomb(true));
        explodes(|| BOMB.reset(token).unwrap());
        assert!(!Context::current().contains(&BOMB));

        // Replaced by `set`, dropped with the token.
        BOMB.set(Bomb(true));
        explodes(|| drop(BOMB.set(Bomb(false))));
        assert!(BOMB.with(|b| b.is_some_and(|b| !b.0)));

        // Dropped with a context after `run`.
        explodes(|| {
            let mut ctx = Context::new();
            ctx.run(|| BOMB.set(Bomb(true)));
            drop(ctx);
        });

        // Dropped at the end of a `sync_scope`, with and without a write inside.
        explodes(|| BOMB.sync_scope(Bomb(true), || {}));
        explodes(|| BOMB.sync_scope(Bomb(true), || drop(PROBE.set(4))));
        assert!(
            BOMB.with(|b| b.is_some_and(|b| !b.0)),
            "the outer value is back"
        );

        // Dropped inside a `WithContext`'s own drop.
        explodes(|| {
            let held = Bomb(true);
            let fut = Context::new().with_value(&PROBE, 9).scope(async move {
                let _held = held;
            });
            drop(fut);
        });
    });
}
