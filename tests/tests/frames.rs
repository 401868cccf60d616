//! How the ways of making a context current nest: `run`s and polls (which leave the
//! context where its caller keeps it and point at it), entries (which move it into the
//! thread's slot) and `sync_scope`s, in every order, including on a thread that has not
//! written to its own context yet. Each set lands in the context current when it is
//! made, and each exit puts back exactly what was current before.

use std::pin::pin;

use ctx_tests::{expect_panic, fresh, poll_once};
use ctx_vars::{Context, ContextVar, FutureExt};

static WHERE: ContextVar<&str> = ContextVar::new("where");
static STEP: ContextVar<u32> = ContextVar::new("step");

/// On a new thread, whose own context nothing has written to yet.
fn on_a_new_thread(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f)
        .join()
        .expect("the thread's checks passed");
}

#[test]
fn a_new_threads_own_context_reads_empty_and_takes_its_first_write() {
    on_a_new_thread(|| {
        assert_eq!(WHERE.get(), None);
        assert!(Context::current().is_empty());
        // A run before any write: its set stays in its context.
        let mut ctx = Context::new();
        ctx.run(|| WHERE.set("run"));
        assert_eq!(ctx.get(&WHERE), Some(&"run"));
        assert_eq!(WHERE.get(), None);
        // The first write to the thread's own context.
        let token = WHERE.set("thread");
        assert_eq!(WHERE.get(), Some("thread"));
        ctx.run(|| assert_eq!(WHERE.get(), Some("run")));
        assert_eq!(Context::current().get(&WHERE), Some(&"thread"));
        WHERE.reset(token).unwrap();
        assert_eq!(WHERE.get(), None);
    });
}

#[test]
fn an_entry_on_a_new_thread_gives_the_thread_back_unwritten() {
    on_a_new_thread(|| {
        let entry = Context::new().enter();
        WHERE.set("entry");
        Context::new().run(|| STEP.set(1));
        assert_eq!((WHERE.get(), STEP.get()), (Some("entry"), None));
        let left = entry.leave();
        assert_eq!(left.get(&WHERE), Some(&"entry"));
        assert_eq!(WHERE.get(), None);
        assert!(Context::current().is_empty());
        WHERE.set("thread");
        assert_eq!(WHERE.get(), Some("thread"));
    });
}

#[test]
fn a_sync_scope_on_a_new_thread_is_undone_with_what_it_set() {
    on_a_new_thread(|| {
        WHERE.sync_scope("scope", || {
            assert_eq!(WHERE.get(), Some("scope"));
            // A write inside the scope: it runs in a copy of the context.
            STEP.set(1);
            assert_eq!(STEP.get(), Some(1));
        });
        assert_eq!((WHERE.get(), STEP.get()), (None, None));
        assert!(Context::current().is_empty());
    });
}

#[test]
fn sets_land_in_the_innermost_context_however_frames_nest() {
    fresh(|| {
        WHERE.set("thread");
        let mut run = Context::new();
        let mut inner = Context::new();
        let entry = run.run(|| {
            WHERE.set("run");
            let entry = Context::new().enter();
            WHERE.set("entry");
            inner.run(|| {
                WHERE.set("inner");
                WHERE.sync_scope("scope", || {
                    STEP.set(1);
                    assert_eq!((WHERE.get(), STEP.get()), (Some("scope"), Some(1)));
                });
                assert_eq!((WHERE.get(), STEP.get()), (Some("inner"), None));
            });
            assert_eq!(WHERE.get(), Some("entry"));
            let entry = entry.leave();
            assert_eq!(WHERE.get(), Some("run"));
            entry
        });
        assert_eq!(WHERE.get(), Some("thread"));
        assert_eq!(run.get(&WHERE), Some(&"run"));
        assert_eq!(entry.get(&WHERE), Some(&"entry"));
        assert_eq!(inner.get(&WHERE), Some(&"inner"));
        assert_eq!(inner.get(&STEP), None);
    });
}

#[test]
fn a_future_polled_inside_an_entry_and_a_run_keeps_its_own_sets() {
    fresh(|| {
        let mut fut = pin!(
            async {
                WHERE.set("future");
                std::future::pending::<()>().await;
            }
            .with_context(Context::new())
        );
        let entry = Context::new().with_value(&WHERE, "entry").enter();
        assert!(poll_once(fut.as_mut()).is_pending());
        assert_eq!(WHERE.get(), Some("entry"));
        let mut run = Context::new().with_value(&WHERE, "run");
        run.run(|| {
            assert!(poll_once(fut.as_mut()).is_pending());
            assert_eq!(WHERE.get(), Some("run"));
        });
        drop(entry.leave());
        assert_eq!(fut.context().get(&WHERE), Some(&"future"));
        assert_eq!(WHERE.get(), None);
    });
}

#[test]
fn a_panic_in_a_run_inside_a_poll_puts_every_frame_back() {
    fresh(|| {
        WHERE.set("thread");
        let mut fut = pin!(
            async {
                WHERE.set("future");
                let caught = std::panic::catch_unwind(|| {
                    Context::new().run(|| {
                        WHERE.set("run");
                        panic!("in the run");
                    })
                });
                assert!(caught.is_err());
                assert_eq!(WHERE.get(), Some("future"));
            }
            .with_context(Context::new())
        );
        assert!(poll_once(fut.as_mut()).is_ready());
        assert_eq!(WHERE.get(), Some("thread"));
    });
}

#[test]
fn an_entry_left_open_in_a_poll_is_closed_when_the_poll_ends() {
    fresh(|| {
        WHERE.set("thread");
        let mut fut = pin!(
            async {
                let entry = Context::new().with_value(&WHERE, "entry").enter();
                std::mem::forget(entry);
                assert_eq!(WHERE.get(), Some("entry"));
            }
            .with_context(Context::new().with_value(&WHERE, "future"))
        );
        let message = expect_panic(|| poll_once(fut.as_mut()));
        assert!(message.contains("was still open when"), "{message}");
        assert_eq!(WHERE.get(), Some("thread"));
    });
}
