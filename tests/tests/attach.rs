//! `Context::attach` and `Context::detach`: a context made current across two calls, as
//! executors' "before poll" and "after poll" hooks need.

use ctx_core::{Context, ContextVar};
use ctx_tests::{expect_panic, fresh};

static STEP: ContextVar<u32> = ContextVar::new("step");
static OUTER: ContextVar<&str> = ContextVar::new("outer");

#[test]
fn attachments_nest_and_give_back_what_ran_in_them() {
    fresh(|| {
        OUTER.set("thread");
        assert!(Context::detach().is_none(), "nothing attached");

        Context::new().with_value(&OUTER, "a").attach();
        STEP.set(1);
        Context::new().with_value(&OUTER, "b").attach();
        assert_eq!((OUTER.get(), STEP.get()), (Some("b"), None));
        STEP.set(2);
        let b = Context::detach().unwrap();
        assert_eq!((OUTER.get(), STEP.get()), (Some("a"), Some(1)));
        let a = Context::detach().unwrap();
        assert_eq!((OUTER.get(), STEP.get()), (Some("thread"), None));

        assert_eq!(b.get(&STEP), Some(&2));
        assert_eq!(a.get(&STEP), Some(&1));
        assert!(Context::detach().is_none());
    });
}

#[test]
fn runs_and_polls_inside_an_attachment_leave_it_intact() {
    fresh(|| {
        Context::new().with_value(&OUTER, "task").attach();
        Context::new().run(|| assert_eq!(OUTER.get(), None));
        assert_eq!(OUTER.get(), Some("task"));
        let task = Context::detach().unwrap();
        assert_eq!(task.get(&OUTER), Some(&"task"));
    });
}

#[test]
fn detaching_from_inside_a_later_run_panics_and_says_what_to_do() {
    fresh(|| {
        Context::new().with_value(&OUTER, "task").attach();
        let message = expect_panic(|| {
            Context::new().run(|| {
                let _ = Context::detach();
            });
        });
        assert!(
            message.contains("leave `run`s and polls before detaching"),
            "{message}"
        );
        // Nothing was undone: the attachment is still there to detach properly.
        assert_eq!(OUTER.get(), Some("task"));
        assert!(Context::detach().is_some());
    });
}

/// `Context::enter`: a context for one poll, entered in place when the thread's context
/// is empty and untouched, by attaching otherwise; the same behaviour either way.
#[test]
fn an_empty_entry_behaves_the_same_in_place_and_attached() {
    fresh(|| {
        // In place: the current context is empty and has handed out no token.
        let entry = Context::new().enter();
        assert_eq!(STEP.get(), None);
        let token = STEP.set(1);
        let task = entry.leave();
        assert_eq!(STEP.get(), None, "the set went with the task's context");
        assert_eq!(task.get(&STEP), Some(&1));
        // Its token belongs to the context that left, wherever it is current next.
        task.attach();
        STEP.reset(token).unwrap();
        assert!(Context::detach().unwrap().is_empty());
        // Nothing set: an empty context back, and the thread's context untouched.
        assert!(Context::new().enter().leave().is_empty());

        // Attached: the current context holds a value, which the entry must not see.
        OUTER.set("thread");
        let entry = Context::new().enter();
        assert_eq!(OUTER.get(), None);
        STEP.set(2);
        let task = entry.leave();
        assert_eq!(task.get(&STEP), Some(&2));
        assert_eq!(task.get(&OUTER), None);
        assert_eq!((OUTER.get(), STEP.get()), (Some("thread"), None));
    });
}

/// What an executor does with a task's own context: enter it for a poll, take it back
/// after, enter it again for the next. Its values and its tokens carry over from poll to
/// poll, in place or attached, and nothing reaches the thread's context.
#[test]
fn a_context_entered_poll_after_poll_keeps_its_values_and_tokens() {
    fresh(|| {
        for outer in [None, Some("thread")] {
            if let Some(outer) = outer {
                // Not empty: every entry is an attachment.
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
fn an_entry_does_not_take_the_place_of_an_emptied_context_with_live_tokens() {
    fresh(|| {
        // Empty again, but it handed out a token that is still live.
        let first = STEP.set(1);
        let second = STEP.set(2);
        STEP.reset(first).unwrap();
        assert!(Context::current().is_empty());
        let entry = Context::new().enter();
        assert_eq!(
            STEP.reset(second),
            Err(ctx_core::ResetError::WrongContext),
            "a token from outside must not reset inside the entered context"
        );
        drop(entry.leave());
    });
}

#[test]
fn an_entry_counts_as_entered_for_strict_mode() {
    std::thread::spawn(|| {
        ctx_core::strict::enable();
        let entry = Context::new().enter();
        STEP.set(3); // allowed: the task's own context
        let task = entry.leave();
        assert_eq!(task.get(&STEP), Some(&3));
        assert!(expect_panic(|| STEP.set(4)).contains("strict"));
    })
    .join()
    .unwrap();
}

#[test]
fn leaving_an_entry_from_inside_a_later_attachment_panics() {
    // A thread of its own: the refused entry cannot be left again, and stays counted.
    std::thread::spawn(|| {
        let entry = Context::new().enter();
        Context::new().with_value(&OUTER, "later").attach();
        let message = expect_panic(|| entry.leave());
        assert!(
            message.contains("leave `run`s and polls before detaching"),
            "{message}"
        );
        // Nothing was undone.
        assert_eq!(OUTER.get(), Some("later"));
        assert!(Context::detach().is_some());
    })
    .join()
    .unwrap();
}
