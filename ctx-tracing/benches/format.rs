//! The per-event cost of two context fields, against the stock formatter, in one run.
//!
//! Every subscriber writes to `io::sink()`, with two variables set in the current
//! context. `log_text` is the stock text formatter as `fmt()` builds it (with its
//! timestamp); `log_text_no_time` leaves the clock out, so that the formatting itself is
//! all that is measured. Each measured step emits [`EVENTS`] events (times are per
//! event), and the variants run interleaved (see `interleaved.rs`): a few percent is all
//! that separates them, and sequential runs on a shared machine drift by more.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ctx_bench_support::interleaved;
use ctx_tracing::ContextFields;
use ctx_vars::{Context, ContextVar};
use tracing::Dispatch;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static TENANT: ContextVar<String> = ContextVar::new("tenant");

/// Events per measured step (times are reported per event).
const EVENTS: u32 = 100;

fn fields() -> ContextFields {
    ContextFields::new().display(&REQUEST_ID).display(&TENANT)
}

/// The same event through `stock` and `with_fields`, and, for reference, through
/// `stock` with the two values passed as event fields instead (what a user writes
/// without ctx-tracing); then both again with a variable set before every event, which
/// makes every line write its fields afresh.
fn bench(c: &mut Criterion, group: &str, stock: Dispatch, with_fields: Dispatch) {
    let mut ctx = Context::new()
        .with_value(&REQUEST_ID, 1_000_042)
        .with_value(&TENANT, "acme".to_owned());
    let plain = |dispatch: &Dispatch, set_each: bool| {
        tracing::dispatcher::with_default(dispatch, || {
            for i in 0..EVENTS {
                if set_each {
                    REQUEST_ID.set(u64::from(i));
                }
                tracing::info!(amount = black_box(3), "charged");
            }
        });
    };
    let stock_run = || plain(&stock, false);
    let ctx_run = || plain(&with_fields, false);
    // A variable set before every event: no line finds the fields of the one before.
    let stock_set_each = || plain(&stock, true);
    let ctx_set_each = || plain(&with_fields, true);
    let event_fields = || {
        tracing::dispatcher::with_default(&stock, || {
            for _ in 0..EVENTS {
                tracing::info!(
                    amount = black_box(3),
                    request_id = REQUEST_ID.get(),
                    tenant = TENANT.with(|t| t.cloned()),
                    "charged"
                );
            }
        });
    };
    ctx.run(|| {
        interleaved(
            c,
            group,
            EVENTS,
            &[
                ("stock", &stock_run),
                ("stock_2_event_fields", &event_fields),
                ("ctx_2_fields", &ctx_run),
                ("stock_set_each", &stock_set_each),
                ("ctx_2_fields_set_each", &ctx_set_each),
            ],
        );
    });
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
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = text, json
}
criterion_main!(benches);
