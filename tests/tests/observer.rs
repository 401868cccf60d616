//! Context observers (`ctx_vars::observer`): told of every entry and exit in nested
//! pairs, also on panic and when a future is dropped; a late observer is not told of
//! exits from contexts entered before it; the slots run out with a typed error.
//! Observers are process-wide, so everything here is one test in a binary of its own.

use std::cell::RefCell;

use ctx_tests::fresh;
use ctx_vars::observer::{self, MAX_OBSERVERS, Observer};
use ctx_vars::{Context, ContextVar, FutureExt};

static NAME: ContextVar<&str> = ContextVar::new("name");

thread_local! {
    /// What the observers saw on this thread, in order.
    static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Records each entry and exit, with the value of `NAME` it sees then.
struct Recorder(&'static str);

impl Observer for Recorder {
    fn entered(&self) {
        let name = NAME.get().unwrap_or("-");
        SEEN.with(|seen| seen.borrow_mut().push(format!("{}+{name}", self.0)));
    }
    fn leaving(&self) {
        let name = NAME.get().unwrap_or("-");
        SEEN.with(|seen| seen.borrow_mut().push(format!("{}-{name}", self.0)));
    }
}

fn take_seen() -> Vec<String> {
    SEEN.with(|seen| seen.take())
}

#[test]
fn observers_see_every_switch_in_nested_pairs() {
    fresh(|| {
        observer::install(Box::new(Recorder("a"))).unwrap();

        // Nested runs, with the values of the context being entered and left.
        take_seen();
        Context::new().with_value(&NAME, "outer").run(|| {
            Context::new().with_value(&NAME, "inner").run(|| {});
        });
        assert_eq!(take_seen(), ["a+outer", "a+inner", "a-inner", "a-outer"]);

        // A future: one pair per poll, and one more when it is dropped unfinished.
        let mut future = Box::pin(
            std::future::pending::<()>().with_context(Context::new().with_value(&NAME, "task")),
        );
        let waker = std::task::Waker::noop();
        let _ = future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        let _ = future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        drop(future);
        assert_eq!(
            take_seen(),
            ["a+task", "a-task", "a+task", "a-task", "a+task", "a-task"]
        );

        // An entry across two calls (what an executor makes for each poll).
        let entry = Context::new().enter();
        NAME.set("fresh");
        assert_eq!(entry.leave().get(&NAME), Some(&"fresh"));
        assert_eq!(take_seen(), ["a+-", "a-fresh"]);

        // A panic: the exit is still told.
        let panicked = std::panic::catch_unwind(|| {
            Context::new()
                .with_value(&NAME, "doomed")
                .run(|| panic!("boom"));
        });
        assert!(panicked.is_err());
        assert_eq!(take_seen(), ["a+doomed", "a-doomed"]);

        // A second observer installed inside a context: told of later switches only,
        // and in reverse order on exit.
        Context::new().with_value(&NAME, "early").run(|| {
            observer::install(Box::new(Recorder("b"))).unwrap();
            Context::new().with_value(&NAME, "late").run(|| {});
        });
        assert_eq!(
            take_seen(),
            ["a+early", "a+late", "b+late", "b-late", "a-late", "a-early"]
        );

        // The slots run out, and the observer comes back with the error.
        for _ in 2..MAX_OBSERVERS {
            observer::install(Box::new(Recorder("c"))).unwrap();
        }
        let full = observer::install(Box::new(Recorder("d"))).unwrap_err();
        assert!(
            full.to_string().contains("observer slots are taken"),
            "{full}"
        );
    });
}
