//! The one-line setup: `#[ctx_tokio::main]`, `#[ctx_tokio::test]` and
//! `ctx_tokio::runtime::Builder` put strict workers, the strict `block_on` and (where
//! built) the task hooks together, the same on both flavors. Built here without the
//! hooks: ctx-tokio/tests/hooks.rs checks the setup with them.

use std::sync::mpsc;

use ctx_tokio::{Context, ContextVar};

static LEAK: ContextVar<u32> = ContextVar::new("leak");
static USER: ContextVar<&str> = ContextVar::new("user");

/// A plain task's `set` is refused, with a message that names the fix; the root
/// future's own context takes sets; ctx's `spawn` carries it.
async fn strict_catches_a_set_in_a_plain_task() {
    assert_eq!(USER.get(), None, "a fresh context");
    USER.set("ada");
    let refused = tokio::spawn(async { LEAK.set(1) }).await.unwrap_err();
    let message = refused.into_panic();
    let message = message.downcast_ref::<String>().expect("a message");
    assert!(
        message.contains("`leak.set(..)` outside any task's context"),
        "{message}"
    );
    assert!(message.contains("ctx_tokio::hooks::TaskHooks"), "{message}");
    let seen = ctx_tokio::spawn(async { USER.get() }).await.unwrap();
    assert_eq!(seen, Some("ada"));
}

#[ctx_tokio::test]
async fn test_attribute_current_thread() {
    strict_catches_a_set_in_a_plain_task().await;
}

#[ctx_tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_attribute_multi_thread() {
    strict_catches_a_set_in_a_plain_task().await;
}

#[ctx_tokio::test(strict = false)]
async fn without_strict_mode_the_set_lands_in_the_thread() {
    // The leak strict mode exists for: the plain task's set stays on the worker.
    tokio::spawn(async { LEAK.set(1) }).await.unwrap();
    assert_eq!(tokio::spawn(async { LEAK.get() }).await.unwrap(), Some(1));
}

fn with_caller_values<R>(f: impl FnOnce() -> R) -> R {
    Context::new().run(|| {
        USER.set("caller");
        f()
    })
}

#[test]
fn the_builder_gives_both_flavors_the_same_setup() {
    for multi_thread in [true, false] {
        let runtime = if multi_thread {
            ctx_tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
        } else {
            ctx_tokio::runtime::Builder::new_current_thread().build()
        }
        .unwrap();
        with_caller_values(|| {
            runtime.block_on(async {
                // The root future runs in a copy of the caller's context.
                assert_eq!(USER.get(), Some("caller"));
                USER.set("ada");
                let refused = tokio::spawn(async { LEAK.set(1) }).await;
                assert!(
                    refused.unwrap_err().is_panic(),
                    "multi_thread: {multi_thread}"
                );
                let seen = runtime_spawn_sees_the_caller().await;
                assert_eq!(seen, Some("ada"));
            });
            assert_eq!(
                USER.get(),
                Some("caller"),
                "the root future's sets stay inside"
            );
        });
    }
}

async fn runtime_spawn_sees_the_caller() -> Option<&'static str> {
    ctx_tokio::spawn(async { USER.get() }).await.unwrap()
}

/// Reports what it sees when dropped.
struct Probe(mpsc::Sender<Option<&'static str>>);
impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.0.send(USER.get());
    }
}

#[test]
fn dropping_the_runtime_drops_pending_tasks_outside_the_callers_context() {
    let (tx, rx) = mpsc::channel();
    with_caller_values(|| {
        let runtime = ctx_tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let probe = Probe(tx);
            drop(tokio::spawn(async move {
                let _probe = probe;
                std::future::pending::<()>().await
            }));
            tokio::task::yield_now().await;
        });
        drop(runtime);
    });
    assert_eq!(rx.recv().unwrap(), None, "not the caller's value");
}
