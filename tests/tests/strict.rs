//! The footgun: a task started with the runtime's own `spawn` runs in its worker
//! thread's base context, so its `set` is seen by the next unwrapped task on that
//! thread. Shown here, then prevented (the adapter) and detected (strict mode).

use ctx_core::{Context, context_var, strict};
use ctx_tests::fresh;
use tokio::runtime::{Builder, Runtime};

#[context_var]
static USER: &'static str;

fn one_worker(strict_mode: bool) -> Runtime {
    let mut builder = Builder::new_multi_thread();
    builder.worker_threads(1).max_blocking_threads(1);
    if strict_mode {
        builder.on_thread_start(strict::enable);
    }
    builder.build().expect("tokio runtime")
}

/// Runs `first` then `second` as tasks on the runtime's single worker, one after the
/// other, and returns what `second` read.
fn in_turn(
    rt: &Runtime,
    spawn: fn(Job) -> tokio::task::JoinHandle<Option<&'static str>>,
) -> Option<&'static str> {
    rt.block_on(async {
        spawn(Box::pin(async {
            USER.set("alice");
            USER.get()
        }))
        .await
        .unwrap();
        spawn(Box::pin(async { USER.get() })).await.unwrap()
    })
}

type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Option<&'static str>> + Send>>;

#[test]
fn a_raw_spawn_leaks_into_the_next_task_and_the_adapter_does_not() {
    fresh(|| {
        let rt = one_worker(false);
        assert_eq!(in_turn(&rt, tokio::spawn), Some("alice"), "the leak");
        let rt = one_worker(false);
        assert_eq!(
            in_turn(&rt, ctx_tokio::spawn),
            None,
            "no leak through the adapter"
        );
    });
}

#[test]
fn strict_mode_refuses_the_leaking_set_and_names_the_fix() {
    fresh(|| {
        let rt = one_worker(true);
        let error = rt
            .block_on(rt.spawn(async { USER.set("alice") }))
            .unwrap_err();
        let panic = error.into_panic();
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        assert!(message.contains("strict mode"), "{message}");
        assert!(message.contains("ctx_tokio::spawn") && message.contains("in_current_context"));

        // The same set inside a task's context is fine, and so is a blocking job's.
        let seen = rt.block_on(async {
            ctx_tokio::spawn(async {
                USER.set("bob");
                let blocking = ctx_tokio::spawn_blocking(|| {
                    USER.set("carol");
                    USER.get()
                });
                (USER.get(), blocking.await.unwrap())
            })
            .await
        });
        assert_eq!(seen.unwrap(), (Some("bob"), Some("carol")));

        // A raw blocking job is refused too.
        let raw_blocking = rt.block_on(rt.spawn_blocking(|| drop(USER.set("dave"))));
        assert!(raw_blocking.unwrap_err().is_panic());

        // Wrapping the future is enough.
        let wrapped = rt.block_on(rt.spawn(ctx_core::FutureExt::in_current_context(async {
            USER.set("erin").old_value().copied()
        })));
        assert_eq!(wrapped.unwrap(), None);
    });
}

#[test]
fn strict_mode_is_per_thread_and_can_be_turned_off() {
    fresh(|| {
        std::thread::spawn(|| {
            assert!(!strict::is_enabled());
            strict::enable();
            assert!(strict::is_enabled());
            assert!(std::panic::catch_unwind(|| USER.set("x")).is_err());
            Context::new().run(|| USER.set("inside a context"));
            strict::disable();
            USER.set("allowed again");
            assert_eq!(USER.get(), Some("allowed again"));
        })
        .join()
        .unwrap();
        assert!(!strict::is_enabled());
    });
}
