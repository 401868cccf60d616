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
