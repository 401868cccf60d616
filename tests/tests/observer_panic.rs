//! An observer that panics cannot leave a thread in the wrong context: on entry the
//! context is left again, on exit the previous one is still made current, and the panic
//! then goes on. Observers are process-wide, so this is a binary of its own.

use ctx_tests::{expect_panic, fresh};
use ctx_vars::observer::{self, Observer};
use ctx_vars::{Context, ContextVar, FutureExt};

static NAME: ContextVar<&str> = ContextVar::new("name");

/// Panics on entering a context whose `NAME` is "bad entry", and on leaving one whose
/// `NAME` is "bad exit".
struct Bomb;

impl Observer for Bomb {
    fn entered(&self) {
        if NAME.get() == Some("bad entry") {
            panic!("observer: entered");
        }
    }
    fn leaving(&self) {
        if NAME.get() == Some("bad exit") {
            panic!("observer: leaving");
        }
    }
}

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| observer::install(Box::new(Bomb)).unwrap());
}

#[test]
fn a_panicking_observer_leaves_the_thread_where_it_was() {
    install();
    fresh(|| {
        NAME.set("outer");
        for bad in ["bad entry", "bad exit"] {
            let message = expect_panic(|| Context::new().with_value(&NAME, bad).run(|| {}));
            assert!(message.starts_with("observer:"), "{message}");
            assert_eq!(NAME.get(), Some("outer"), "run, {bad}");

            // Dropped while the panic unwinds: entered again to drop the inner future,
            // where the observer's second panic is not let through (it would abort).
            let future = async {}.with_context(Context::new().with_value(&NAME, bad));
            let message = expect_panic(|| {
                let mut future = Box::pin(future);
                let waker = std::task::Waker::noop();
                let _ = future
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(waker));
            });
            assert!(message.starts_with("observer:"), "{message}");
            assert_eq!(NAME.get(), Some("outer"), "poll, {bad}");

            let message = expect_panic(|| {
                let entry = Context::new().with_value(&NAME, bad).enter();
                drop(entry.leave());
            });
            assert!(message.starts_with("observer:"), "{message}");
            assert_eq!(NAME.get(), Some("outer"), "entry, {bad}");
        }
    });
}

/// In a runtime: a task whose observer panicked must not hand its value to the next
/// task polled on that worker.
#[test]
fn the_next_task_on_the_worker_does_not_see_the_panicked_ones_value() {
    install();
    fresh(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for bad in ["bad entry", "bad exit"] {
                let task = async {}.with_context(Context::new().with_value(&NAME, bad));
                assert!(tokio::spawn(task).await.unwrap_err().is_panic());
                let seen = tokio::spawn(async { NAME.get() }).await.unwrap();
                assert_eq!(seen, None, "{bad}");
            }
        });
    });
}
