//! `ResetGuard`s nest: out-of-order drops, and drops in the wrong place, are refused
//! loudly with a message that names the fix, never by silently keeping a value.

use ctx_tests::{block_on, expect_panic, fresh};
use ctx_vars::{Context, ContextVar, FutureExt, ResetError};
use tokio::sync::oneshot;

static LEVEL: ContextVar<u32> = ContextVar::new("level");

/// Two `join!` branches of one task each hold a guard; the first branch to finish set
/// its value first, so its guard drops while the other branch's value is current.
#[test]
fn guards_in_two_join_branches_dropped_out_of_order_panic_with_the_fix() {
    fresh(|| {
        let message = expect_panic(|| {
            block_on(async {
                let (set, wait) = oneshot::channel::<()>();
                let (done, finish) = oneshot::channel::<()>();
                let a = async {
                    let _guard = LEVEL.set_scoped(1);
                    set.send(()).unwrap();
                    finish.await.unwrap();
                };
                let b = async {
                    wait.await.unwrap();
                    let _guard = LEVEL.set_scoped(2);
                    done.send(()).unwrap();
                    std::future::pending::<()>().await;
                };
                tokio::join!(a, b);
            })
        });
        assert!(message.contains("dropped while a later set"), "{message}");
        assert!(message.contains("reverse order"), "{message}");
        assert!(message.contains("in_current_context"), "{message}");
        assert!(message.contains("level.scope(value, fut)"), "{message}");
        // The panic was caught in the same context: neither branch's value is left.
        assert_eq!(LEVEL.get(), None, "no branch's value outlives the join");
    });
}

/// Guards dropped out of order, the refusal caught: the later value stays while it is in
/// place, and the earlier guard's set is undone as soon as the later one is.
#[test]
fn an_out_of_order_guard_is_undone_when_the_later_set_is() {
    fresh(|| {
        LEVEL.set(0);
        let outer = LEVEL.set_scoped(1);
        let inner = LEVEL.set_scoped(2);
        let message = expect_panic(move || drop(outer));
        assert!(message.contains("dropped while a later set"), "{message}");
        assert_eq!(
            LEVEL.get(),
            Some(2),
            "the later value stays while it is in place"
        );
        drop(inner);
        assert_eq!(LEVEL.get(), Some(0), "both undone, as if dropped in order");
    });
}

#[test]
fn guards_in_branches_with_their_own_contexts_are_fine() {
    fresh(|| {
        block_on(async {
            let (set, wait) = oneshot::channel::<()>();
            let (done, finish) = oneshot::channel::<()>();
            let a = async {
                let _guard = LEVEL.set_scoped(1);
                set.send(()).unwrap();
                finish.await.unwrap();
                LEVEL.get()
            }
            .in_current_context();
            let b = async {
                wait.await.unwrap();
                let _guard = LEVEL.set_scoped(2);
                done.send(()).unwrap();
                LEVEL.get()
            }
            .in_current_context();
            assert_eq!(tokio::join!(a, b), (Some(1), Some(2)));
            assert_eq!(LEVEL.get(), None);
        });
    });
}

#[test]
fn nested_guards_dropped_in_order_restore_each_level() {
    fresh(|| {
        let outer = LEVEL.set_scoped(1);
        let inner = LEVEL.set_scoped(2);
        // A plain set that is undone before the guard drops is fine too.
        let token = LEVEL.set(3);
        LEVEL.reset(token).unwrap();
        drop(inner);
        assert_eq!(LEVEL.get(), Some(1));
        drop(outer);
        assert_eq!(LEVEL.get(), None);
    });
}

#[test]
fn an_explicit_reset_out_of_order_is_an_error_that_changes_nothing() {
    fresh(|| {
        let outer = LEVEL.set_scoped(1);
        let inner = LEVEL.set_scoped(2);
        assert_eq!(outer.reset(), Err(ResetError::Superseded));
        assert_eq!(LEVEL.get(), Some(2), "nothing changed");
        assert!(ResetError::Superseded.to_string().contains("reverse order"));
        inner.reset().unwrap();
        // The outer guard is used up: its value stays, as with an unreset token.
        assert_eq!(LEVEL.get(), Some(1));
    });
}

#[test]
fn a_plain_set_left_in_place_under_a_guard_is_refused_not_lost() {
    fresh(|| {
        let message = expect_panic(|| {
            let _guard = LEVEL.set_scoped(1);
            LEVEL.set(5);
        });
        assert!(message.contains("later set"), "{message}");
        assert_eq!(LEVEL.get(), Some(5), "the later value was not thrown away");
    });
}

#[test]
fn a_guard_dropped_inside_a_later_sync_scope_says_so() {
    static OTHER: ContextVar<u32> = ContextVar::new("other");
    fresh(|| {
        let guard = LEVEL.set_scoped(1);
        let message = expect_panic(|| OTHER.sync_scope(2, move || drop(guard)));
        assert!(message.contains("inside a `sync_scope`"), "{message}");
        assert!(message.contains("same task"), "{message}");
        assert_eq!(LEVEL.get(), Some(1), "nothing changed");

        // In another context entered inside the scope, the message is the general one.
        let guard = LEVEL.set_scoped(3);
        let message =
            expect_panic(|| OTHER.sync_scope(2, move || Context::new().run(move || drop(guard))));
        assert!(message.contains("another context"), "{message}");
        assert!(message.contains("different Context"), "{message}");
    });
}

/// Small plain values are stored inline, copied rather than shared: a set is still told
/// apart from an equal one, so guards of equal values nest as any others do.
#[test]
fn guards_of_equal_values_are_told_apart() {
    fresh(|| {
        LEVEL.set(0);
        let outer = LEVEL.set_scoped(1);
        let inner = LEVEL.set_scoped(1);
        assert_eq!(
            outer.reset(),
            Err(ResetError::Superseded),
            "not the outer set"
        );
        inner.reset().unwrap();
        assert_eq!(
            LEVEL.get(),
            Some(1),
            "the outer set is used up, its value stays"
        );

        let outer = LEVEL.set_scoped(7);
        let inner = LEVEL.set_scoped(7);
        let message = expect_panic(move || drop(outer));
        assert!(message.contains("dropped while a later set"), "{message}");
        drop(inner);
        assert_eq!(LEVEL.get(), Some(1), "both undone, as if dropped in order");
    });
}
