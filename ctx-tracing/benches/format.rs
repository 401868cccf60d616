//! The per-event cost of two context fields, against the stock formatter, in one run.
//!
//! Every subscriber writes to `io::sink()`, with two variables set in the current
//! context. `log_text` is the stock text formatter as `fmt()` builds it (with its
//! timestamp); `log_text_no_time` leaves the clock out, so that the formatting itself is
//! all that is measured.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ctx_core::{Context, ContextVar};
use ctx_tracing::ContextFields;
use tracing::Dispatch;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static TENANT: ContextVar<String> = ContextVar::new("tenant");

fn fields() -> ContextFields {
    ContextFields::new().display(&REQUEST_ID).display(&TENANT)
}

/// The same event through `stock` and `with_fields`, and, for reference, through
/// `stock` with the two values passed as event fields instead (what a user writes
/// without ctx-tracing).
fn bench(c: &mut Criterion, group: &str, stock: Dispatch, with_fields: Dispatch) {
    let mut group = c.benchmark_group(group);
    let mut ctx = Context::new()
        .with_value(&REQUEST_ID, 1_000_042)
        .with_value(&TENANT, "acme".to_owned());
    ctx.run(|| {
        tracing::dispatcher::with_default(&stock, || {
            group.bench_function("stock", |b| {
                b.iter(|| tracing::info!(amount = black_box(3), "charged"));
            });
            group.bench_function("stock_2_event_fields", |b| {
                b.iter(|| {
                    tracing::info!(
                        amount = black_box(3),
                        request_id = REQUEST_ID.get(),
                        tenant = TENANT.with(|t| t.cloned()),
                        "charged"
                    );
                });
            });
        });
        tracing::dispatcher::with_default(&with_fields, || {
            group.bench_function("ctx_2_fields", |b| {
                b.iter(|| tracing::info!(amount = black_box(3), "charged"));
            });
        });
    });
    group.finish();
}

fn text(c: &mut Criterion) {
    let builder = || {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(std::io::sink)
    };
    let stock = Dispatch::new(builder().finish());
    let with_fields = Dispatch::new(builder().map_event_format(|f| fields().wrap(f)).finish());
    bench(c, "log_text", stock, with_fields);

    let builder = || builder().without_time();
    let stock = Dispatch::new(builder().finish());
    let with_fields = Dispatch::new(builder().map_event_format(|f| fields().wrap(f)).finish());
    bench(c, "log_text_no_time", stock, with_fields);
}

fn json(c: &mut Criterion) {
    let builder = || tracing_subscriber::fmt().json().with_writer(std::io::sink);
    let stock = Dispatch::new(builder().finish());
    let with_fields = Dispatch::new(builder().map_event_format(|f| fields().wrap(f)).finish());
    bench(c, "log_json", stock, with_fields);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = text, json
}
criterion_main!(benches);
