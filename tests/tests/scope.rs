//! `ContextVar::sync_scope`: runs a closure as if in a copy of the current context with
//! one more value, whatever the closure does inside.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ctx_tests::{Tracked, block_on, fresh};
use ctx_vars::{Context, ContextVar, FutureExt, ResetError};

static A: ContextVar<u32> = ContextVar::new("a");
static B: ContextVar<u32> = ContextVar::new("b");
static VALUE: ContextVar<Tracked> = ContextVar::new("value");

#[test]
fn the_value_is_seen_inside_and_gone_after() {
    fresh(|| {
        assert_eq!(A.sync_scope(1, || A.get()), Some(1));
        assert_eq!(A.get(), None, "absent again");
        assert!(!Context::current().contains(&A));
        A.set(5);
        assert_eq!(A.sync_scope(1, || A.get()), Some(1));
        assert_eq!(A.get(), Some(5), "the previous value again");
    });
}

#[test]
fn sets_inside_do_not_leak_out() {
    fresh(|| {
        A.set(5);
        A.sync_scope(1, || {
            A.set(2);
            B.set(3);
            assert_eq!((A.get(), B.get()), (Some(2), Some(3)));
        });
        assert_eq!((A.get(), B.get()), (Some(5), None));
        assert_eq!(Context::current().len(), 1);
    });
}

#[test]
fn nested_scopes_restore_each_level_with_writes_anywhere() {
    fresh(|| {
        A.set(0);
        A.sync_scope(1, || {
            B.sync_scope(10, || {
                A.sync_scope(2, || {
                    assert_eq!((A.get(), B.get()), (Some(2), Some(10)));
                    B.set(11);
                });
                assert_eq!((A.get(), B.get()), (Some(1), Some(10)));
                A.set(3);
                assert_eq!(A.get(), Some(3));
            });
            assert_eq!((A.get(), B.get()), (Some(1), None));
            B.sync_scope(20, || assert_eq!(B.get(), Some(20)));
            A.set(4);
            A.sync_scope(5, || assert_eq!(A.get(), Some(5)));
            assert_eq!(A.get(), Some(4));
        });
        assert_eq!((A.get(), B.get()), (Some(0), None));
    });
}

#[test]
fn a_snapshot_taken_inside_keeps_the_scoped_values() {
    fresh(|| {
        let (before_write, after_write) = A.sync_scope(1, || {
            let before = Context::current();
            B.set(2);
            (before, Context::current())
        });
        assert_eq!(
            (before_write.get(&A), before_write.get(&B)),
            (Some(&1), None)
        );
        assert_eq!(
            (after_write.get(&A), after_write.get(&B)),
            (Some(&1), Some(&2))
        );
        assert!(Context::current().is_empty());

        let task = A.sync_scope(7, || async { A.get() }.in_current_context());
        assert_eq!(block_on(task), Some(7));
    });
}

#[test]
fn tokens_do_not_cross_the_scope_boundary() {
    fresh(|| {
        let outer = A.set(1);
        let (inner, outer_result) = A.sync_scope(2, || {
            let result = A.reset(outer);
            (A.set(3), result)
        });
        let outer = match outer_result {
            Err(ResetError::WrongContext) => A.set(1), // the refused token is gone; redo
            other => panic!("expected WrongContext, got {other:?}"),
        };
        assert_eq!(A.reset(inner), Err(ResetError::WrongContext));
        assert_eq!(A.get(), Some(1));
        A.reset(outer).unwrap();
        assert_eq!(A.get(), Some(1), "`outer`'s before is the first set");

        // Inside, tokens made there reset there, before and after nested scopes.
        A.sync_scope(2, || {
            let token = A.set(3);
            B.sync_scope(9, || {});
            A.reset(token).unwrap();
            assert_eq!(A.get(), Some(2));
        });
    });
}

#[test]
fn a_panic_inside_restores_the_context() {
    fresh(|| {
        A.set(1);
        let caught = std::panic::catch_unwind(|| {
            A.sync_scope(2, || {
                B.set(3);
                panic!("boom");
            })
        });
        assert!(caught.is_err());
        assert_eq!((A.get(), B.get()), (Some(1), None));
        let caught = std::panic::catch_unwind(|| A.sync_scope(2, || panic!("no writes")));
        assert!(caught.is_err());
        assert_eq!(A.get(), Some(1));
    });
}

#[test]
fn other_contexts_entered_inside_keep_their_own_scopes() {
    fresh(|| {
        let mut other = Context::new().with_value(&B, 1);
        A.sync_scope(1, || {
            other.run(|| {
                assert_eq!((A.get(), B.get()), (None, Some(1)));
                B.sync_scope(2, || {
                    B.set(3);
                    A.set(4);
                });
                B.set(5); // a write to `other`, not to the scoped context
            });
            assert_eq!((A.get(), B.get()), (Some(1), None));
            A.set(6);
        });
        assert_eq!((A.get(), B.get()), (None, None));
        assert_eq!((other.get(&A), other.get(&B)), (None, Some(&5)));

        // A future polled inside a scope runs in its own context.
        let fut = Context::new().with_value(&A, 9).scope(async {
            A.set(10);
            A.get()
        });
        assert_eq!(A.sync_scope(1, || block_on(fut)), Some(10));
    });
}

#[test]
fn scoped_values_are_dropped_on_exit_and_may_reenter() {
    fresh(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = std::sync::mpsc::channel();
        A.set(1);
        VALUE.sync_scope(
            Tracked::on_drop(&drops, move || {
                tx.send(A.get()).unwrap();
                A.set(100); // in whatever context is current when it drops
            }),
            || assert_eq!(drops.load(Ordering::SeqCst), 0),
        );
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(seen.recv().unwrap(), Some(1));

        // With a write inside, the whole scoped map goes on exit.
        VALUE.sync_scope(Tracked::new(&drops), || {
            B.set(2);
            VALUE.set(Tracked::new(&drops));
        });
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    });
}
