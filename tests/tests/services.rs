//! Request context across a service boundary: two axum services on loopback, A calling B
//! through ctx-opentelemetry's client layer (`ctx_tests::services`).

use ctx_tests::fresh;
use ctx_tests::services::{drive, start};
use ctx_vars::strict;

#[test]
fn b_and_its_tasks_see_the_values_a_received_and_set() {
    fresh(|| {
        // Strict workers: a value set outside a request's context would panic.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .on_thread_start(strict::enable)
            .build()
            .expect("tokio runtime");
        let report = ctx_tokio::block_on(&rt, async {
            let a = start().await;
            drive(a, 1_000, 32).await
        });
        assert_eq!(report.failures, 0, "{report:?}");
        assert_eq!(report.requests, 1_000);
        assert_eq!(report.checked, 3_000);
        assert_eq!(report.mismatches, 0, "{report:?}");
    });
}
