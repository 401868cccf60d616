//! Instruction counts of one log line, for `valgrind --tool=callgrind`: repeatable on a
//! shared machine where criterion's times swing. See BENCHMARKS.md.
//!
//! `log_icount <format> <variant> <n>` emits the bench's event `n` times to `io::sink()`,
//! with `format` one of `text`, `text_no_time`, `json`, and `variant` one of `stock`,
//! `ctx` (two context fields). The cost of one line is the difference between the counts
//! for two values of `n`, divided by the difference of the `n`s.

use std::hint::black_box;

use ctx_tracing::ContextFields;
use ctx_vars::{Context, ContextVar};
use tracing::Dispatch;

static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
static TENANT: ContextVar<String> = ContextVar::new("tenant");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(format), Some(variant), Some(Ok(n))) = (
        args.get(1),
        args.get(2),
        args.get(3).map(|n| n.parse::<u32>()),
    ) else {
        eprintln!("usage: log_icount <text|text_no_time|json> <stock|ctx|ctx0>[_set] <n>");
        std::process::exit(2);
    };
    let (format, variant) = (format.as_str(), variant.as_str());
    // `_set`: a variable set before every event, so that no line finds its fields kept.
    let (variant, set_each) = match variant.strip_suffix("_set") {
        Some(variant) => (variant, true),
        None => (variant, false),
    };
    let fields = match variant {
        // The wrapper alone: the line copied, no field to add.
        "ctx0" => ContextFields::new(),
        _ => ContextFields::new().display(&REQUEST_ID).display(&TENANT),
    };
    let variant = if variant == "ctx0" { "ctx" } else { variant };
    let builder = || {
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(std::io::sink)
    };
    let dispatch = match (format, variant) {
        ("text", "stock") => Dispatch::new(builder().finish()),
        ("text", "ctx") => Dispatch::new(builder().map_event_format(|f| fields.wrap(f)).finish()),
        ("text_no_time", "stock") => Dispatch::new(builder().without_time().finish()),
        ("text_no_time", "ctx") => Dispatch::new(
            builder()
                .without_time()
                .map_event_format(|f| fields.wrap(f))
                .finish(),
        ),
        ("json", "stock") => Dispatch::new(builder().json().finish()),
        ("json", "ctx") => Dispatch::new(
            builder()
                .json()
                .map_event_format(|f| fields.wrap(f))
                .finish(),
        ),
        _ => {
            eprintln!("unknown format {format:?} or variant {variant:?}");
            std::process::exit(2);
        }
    };
    let mut ctx = Context::new()
        .with_value(&REQUEST_ID, 1_000_042)
        .with_value(&TENANT, "acme".to_owned());
    ctx.run(|| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..n {
                if set_each {
                    REQUEST_ID.set(u64::from(i));
                }
                tracing::info!(amount = black_box(3), "charged");
            }
        });
    });
}
