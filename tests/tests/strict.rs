//! The footgun: a task started with the runtime's own `spawn` runs in its worker
//! thread's base context, so its `set` is seen by the next unwrapped task on that
//! thread. Shown here, then prevented (the adapter) and detected (strict mode).

use ctx_tests::fresh;
use ctx_vars::{Context, context_var, strict};
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
        assert!(message.contains("ctx_tokio::spawn") && message.contains("in_inherited_context"));

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
        let wrapped = rt.block_on(rt.spawn(ctx_vars::FutureExt::in_inherited_context(async {
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

/// On a current-thread runtime every task runs on the thread that calls `block_on`,
/// where no `on_thread_start` hook runs: `ctx_tokio::strict::block_on` covers it.
#[test]
fn strict_block_on_covers_a_current_thread_runtime() {
    fresh(|| {
        let rt = Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        USER.set("caller");
        let (root_sees, raw_sees, leak) = ctx_tokio::strict::block_on(&rt, async {
            let root_sees = USER.get();
            USER.set("root"); // the root future has a context of its own
            let raw_sees = tokio::spawn(async { USER.get() }).await.unwrap();
            let leak = tokio::spawn(async { USER.set("mallory") })
                .await
                .unwrap_err();
            let wrapped = ctx_tokio::spawn(async { USER.set("ok").old_value().copied() });
            assert_eq!(wrapped.await.unwrap(), Some("root"));
            (root_sees, raw_sees, leak)
        });
        assert_eq!(root_sees, Some("caller"));
        assert_eq!(
            raw_sees, None,
            "unwrapped tasks do not read the caller's values"
        );
        let message = ctx_tests::panic_message(&*leak.into_panic());
        assert!(message.contains("strict mode"), "{message}");
        // Everything is back as it was.
        assert!(!strict::is_enabled());
        assert_eq!(USER.get(), Some("caller"));
    });
}

#[test]
fn without_strict_block_on_a_current_thread_task_leaks_into_the_caller() {
    fresh(|| {
        let rt = Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
        USER.set("caller");
        ctx_tokio::block_on(&rt, async {
            tokio::spawn(async { USER.set("mallory") }).await.unwrap();
        });
        assert_eq!(
            USER.get(),
            Some("mallory"),
            "the leak strict mode exists for"
        );
    });
}

#[test]
fn strict_run_restores_the_thread_on_panic() {
    fresh(|| {
        USER.set("caller");
        let caught = std::panic::catch_unwind(|| {
            strict::run(|| {
                assert!(strict::is_enabled());
                panic!("boom")
            })
        });
        assert!(caught.is_err());
        assert!(!strict::is_enabled());
        assert_eq!(USER.get(), Some("caller"));
    });
}

#[test]
fn is_enabled_may_be_asked_while_a_value_is_being_cloned() {
    #[derive(Debug)]
    struct Asks;
    impl Clone for Asks {
        fn clone(&self) -> Self {
            assert!(!strict::is_enabled());
            Asks
        }
    }
    static ASKS: ctx_vars::ContextVar<Asks> = ctx_vars::ContextVar::new("asks");
    fresh(|| {
        ASKS.set(Asks);
        assert!(ASKS.get().is_some());
    });
}
