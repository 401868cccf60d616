//! OpenTelemetry's current context following ctx (`ctx_opentelemetry::bridge`): into
//! threads and tasks, across polls on any worker, and gone again where ctx's context is
//! left. The bridge is process-wide, so these tests have a binary of their own.

use ctx_opentelemetry::bridge;
use ctx_tests::fresh;
use ctx_vars::{Context, FutureExt};
use opentelemetry::KeyValue;
use opentelemetry::baggage::BaggageExt;

fn otel(tenant: &str) -> opentelemetry::Context {
    opentelemetry::Context::new().with_baggage([KeyValue::new("tenant", tenant.to_owned())])
}

/// The tenant in OpenTelemetry's current context on this thread.
fn otel_tenant() -> Option<String> {
    opentelemetry::Context::map_current(|cx| cx.baggage().get("tenant").map(|v| v.to_string()))
}

#[test]
fn threads_and_tasks_see_the_context_they_were_spawned_from() {
    assert!(bridge::install());
    assert!(bridge::install(), "a second install changes nothing");
    fresh(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Context::new().run(|| {
            assert_eq!(otel_tenant(), None);
            bridge::set(otel("acme"));
            assert_eq!(otel_tenant().as_deref(), Some("acme"), "attached at once");
            assert_eq!(bridge::get().map(|cx| cx.baggage().len()), Some(1));

            let thread = ctx_vars::thread::spawn(otel_tenant);
            assert_eq!(thread.join().unwrap().as_deref(), Some("acme"));

            // 100 tasks, each its own tenant, each checking at every poll on whichever
            // worker polls it.
            let seen = ctx_tokio::block_on(&rt, async {
                let tasks: Vec<_> = (0..100)
                    .map(|i| {
                        ctx_tokio::spawn(async move {
                            bridge::set(otel(&format!("t{i}")));
                            let mut ok = true;
                            for _ in 0..10 {
                                tokio::task::yield_now().await;
                                ok &= otel_tenant() == Some(format!("t{i}"));
                            }
                            ok
                        })
                    })
                    .collect();
                let mut all = true;
                for task in tasks {
                    all &= task.await.unwrap();
                }
                // The spawner's own value is untouched by its tasks'.
                (all, otel_tenant())
            });
            assert_eq!(seen, (true, Some("acme".to_owned())));

            // Unwrapped tasks run outside ctx's contexts: the workers hold nothing.
            let bare = rt.block_on(async { tokio::spawn(async { otel_tenant() }).await.unwrap() });
            assert_eq!(bare, None);
        });
        assert_eq!(otel_tenant(), None, "left with the context");
    });
}

#[test]
fn nested_contexts_attach_and_detach_in_order() {
    assert!(bridge::install());
    fresh(|| {
        Context::new().run(|| {
            bridge::set(otel("outer"));
            let inner = Context::current();
            let mut inner = inner.clone();
            inner.run(|| {
                assert_eq!(otel_tenant().as_deref(), Some("outer"), "a copy holds it");
                bridge::set(otel("inner"));
                assert_eq!(otel_tenant().as_deref(), Some("inner"));
            });
            assert_eq!(otel_tenant().as_deref(), Some("outer"));
            // The copy kept its own value.
            inner.run(|| assert_eq!(otel_tenant().as_deref(), Some("inner")));
        });
    });
}

#[test]
fn a_panicking_poll_leaves_the_thread_clean() {
    assert!(bridge::install());
    fresh(|| {
        let mut future = Box::pin(
            async {
                bridge::set(otel("doomed"));
                panic!("boom");
            }
            .in_current_context(),
        );
        let waker = std::task::Waker::noop();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = future
                .as_mut()
                .poll(&mut std::task::Context::from_waker(waker));
        }));
        assert!(outcome.is_err());
        assert_eq!(otel_tenant(), None);
    });
}

/// A `bridge::set` inside a `sync_scope` is the scope's, like any `set` there: once the
/// scope ends, the bridge and OpenTelemetry's current context agree again.
#[test]
fn a_set_inside_a_sync_scope_ends_with_it() {
    use ctx_vars::ContextVar;
    static MARK: ContextVar<u8> = ContextVar::new("mark");
    assert!(bridge::install());
    fresh(|| {
        Context::new().run(|| {
            bridge::set(otel("outer"));
            MARK.sync_scope(1, || {
                bridge::set(otel("scoped"));
                assert_eq!(otel_tenant().as_deref(), Some("scoped"));
            });
            let stored =
                bridge::get().and_then(|cx| cx.baggage().get("tenant").map(|v| v.to_string()));
            assert_eq!(stored.as_deref(), Some("outer"));
            assert_eq!(otel_tenant().as_deref(), Some("outer"));
        });
        assert_eq!(otel_tenant(), None);
    });
}
