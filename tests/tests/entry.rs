//! `Context::enter` and `Entry::leave`: a context made current across two calls, as
//! executors' "before poll" and "after poll" hooks need, and what a misuse of them does:
//! the thread is put back as it was, never left in another context, and the misuse
//! panics.

use ctx_tests::{expect_panic, fresh};
use ctx_vars::{Context, ContextVar};

static STEP: ContextVar<u32> = ContextVar::new("step");
static OUTER: ContextVar<&str> = ContextVar::new("outer");

#[test]
fn entries_nest_and_give_back_what_ran_in_them() {
    fresh(|| {
        OUTER.set("thread");
        let a = Context::new().with_value(&OUTER, "a").enter();
        assert_eq!(OUTER.get(), Some("a"));
        let b = Context::new().with_value(&OUTER, "b").enter();
        STEP.set(2);
        let b = b.leave();
        assert_eq!((OUTER.get(), STEP.get()), (Some("a"), None));
        STEP.set(1);
        let a = a.leave();
        assert_eq!((OUTER.get(), STEP.get()), (Some("thread"), None));
        assert_eq!((a.get(&OUTER), a.get(&STEP)), (Some(&"a"), Some(&1)));
        assert_eq!((b.get(&OUTER), b.get(&STEP)), (Some(&"b"), Some(&2)));
    });
}

#[test]
fn runs_and_polls_inside_an_entry_leave_it_intact() {
    fresh(|| {
        let entry = Context::new().with_value(&OUTER, "task").enter();
        Context::new().run(|| assert_eq!(OUTER.get(), None));
        OUTER.sync_scope("scoped", || assert_eq!(OUTER.get(), Some("scoped")));
        assert_eq!(OUTER.get(), Some("task"));
        let task = entry.leave();
        assert_eq!(task.get(&OUTER), Some(&"task"));
    });
}

#[test]
fn a_dropped_entry_leaves_its_context() {
    fresh(|| {
        OUTER.set("thread");
        let entry = Context::new().with_value(&OUTER, "task").enter();
        assert_eq!(OUTER.get(), Some("task"));
        drop(entry);
        assert_eq!(OUTER.get(), Some("thread"));
    });
}

/// What an executor does with a task's own context: enter it for a poll, take it back
/// after, enter it again for the next. Its values and its tokens carry over from poll to
/// poll, whatever the thread's own context holds, and nothing reaches it.
#[test]
fn a_context_entered_poll_after_poll_keeps_its_values_and_tokens() {
    fresh(|| {
        for outer in [None, Some("thread")] {
            if let Some(outer) = outer {
                OUTER.set(outer);
            }
            let mut task = Context::new().with_value(&OUTER, "task");
            let entry = task.enter();
            assert_eq!(OUTER.get(), Some("task"));
            let token = STEP.set(1);
            task = entry.leave();
            assert_eq!((OUTER.get(), STEP.get()), (outer, None));

            let entry = task.enter();
            assert_eq!(STEP.get(), Some(1));
            STEP.reset(token)
                .expect("a token from the task's last poll");
            STEP.set(2);
            task = entry.leave();
            assert_eq!((OUTER.get(), STEP.get()), (outer, None));
            assert_eq!(task.get(&STEP), Some(&2));
            assert_eq!(task.get(&OUTER), Some(&"task"));
        }
    });
}

#[test]
fn an_entry_refuses_tokens_from_the_context_it_hides() {
    fresh(|| {
        // Empty again, but it handed out a token that is still live.
        let first = STEP.set(1);
        let second = STEP.set(2);
        STEP.reset(first).unwrap();
        assert!(Context::current().is_empty());
        let entry = Context::new().enter();
        assert_eq!(
            STEP.reset(second),
            Err(ctx_vars::ResetError::WrongContext),
            "a token from outside must not reset inside the entered context"
        );
        drop(entry.leave());
    });
}

#[test]
fn an_entry_counts_as_entered_for_strict_mode() {
    std::thread::spawn(|| {
        ctx_vars::strict::enable();
        let entry = Context::new().enter();
        STEP.set(3); // allowed: the task's own context
        let task = entry.leave();
        assert_eq!(task.get(&STEP), Some(&3));
        assert!(expect_panic(|| STEP.set(4)).contains("strict"));
    })
    .join()
    .unwrap();
}

/// Two entries left in the wrong order: the first must not take the second's context
/// for its own, nor leave the thread in its own.
#[test]
fn leaving_entries_out_of_order_panics_and_puts_the_thread_back() {
    fresh(|| {
        OUTER.set("thread");
        let a = Context::new().with_value(&OUTER, "a").enter();
        let b = Context::new().with_value(&OUTER, "b").enter();
        let message = expect_panic(|| a.leave());
        assert!(
            message.contains("was left while a context entered after it"),
            "{message}"
        );
        assert_eq!(OUTER.get(), Some("thread"), "back to before both entries");
        let message = expect_panic(|| b.leave());
        assert!(message.contains("after its frame was closed"), "{message}");
        assert_eq!(OUTER.get(), Some("thread"));
    });
}

/// An entry left from inside a later `run`: the run keeps its context until it ends,
/// and then the thread goes back to before the entry.
#[test]
fn an_entry_left_inside_a_later_run_closes_when_the_run_ends() {
    fresh(|| {
        OUTER.set("thread");
        let entry = Context::new().with_value(&OUTER, "task").enter();
        Context::new().with_value(&OUTER, "run").run(|| {
            let message = expect_panic(|| entry.leave());
            assert!(
                message.contains("was left while a context entered after it"),
                "{message}"
            );
            assert_eq!(
                OUTER.get(),
                Some("run"),
                "the run's own context is untouched"
            );
        });
        assert_eq!(
            OUTER.get(),
            Some("thread"),
            "the entry closed when the run ended"
        );

        // The same under a scope opened inside the entry.
        let entry = Context::new().with_value(&OUTER, "task").enter();
        STEP.sync_scope(1, || {
            let message = expect_panic(|| entry.leave());
            assert!(message.contains("was left while"), "{message}");
            assert_eq!((OUTER.get(), STEP.get()), (Some("task"), Some(1)));
        });
        assert_eq!((OUTER.get(), STEP.get()), (Some("thread"), None));
    });
}

/// An entry kept past the `run` it was entered in must not be swapped into the run's
/// own `Context` value, nor keep the thread in its context.
#[test]
fn an_entry_left_open_inside_a_run_is_closed_with_it() {
    fresh(|| {
        OUTER.set("thread");
        let mut ctx = Context::new().with_value(&OUTER, "run");
        let message =
            expect_panic(|| ctx.run(|| Context::new().with_value(&OUTER, "entry").enter()));
        assert!(
            message.contains("was still open when the `run`"),
            "{message}"
        );
        assert_eq!(
            ctx.get(&OUTER),
            Some(&"run"),
            "the run's context is its own"
        );
        assert_eq!(OUTER.get(), Some("thread"));

        // The same for a scope.
        let message = expect_panic(|| {
            STEP.sync_scope(1, || Context::new().with_value(&OUTER, "entry").enter())
        });
        assert!(
            message.contains("still open when the `sync_scope`"),
            "{message}"
        );
        assert_eq!((OUTER.get(), STEP.get()), (Some("thread"), None));
    });
}

/// A strict base nests with entries: an entry inside it is a task's context, where
/// sets are allowed, and the base refuses them again after.
#[test]
fn a_strict_base_and_entries_nest() {
    fresh(|| {
        OUTER.set("thread");
        ctx_vars::strict::run(|| {
            assert_eq!(OUTER.get(), None);
            let entry = Context::new().enter();
            STEP.set(1);
            assert_eq!(entry.leave().get(&STEP), Some(&1));
            assert!(expect_panic(|| STEP.set(2)).contains("strict"));
        });
        assert_eq!(OUTER.get(), Some("thread"));
        STEP.set(3); // the thread's own mode is back
    });
}
