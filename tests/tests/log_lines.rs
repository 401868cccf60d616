//! What ctx-tracing's wrapped formatters write, captured from a real `fmt` subscriber.

use ctx_tests::Capture;
use ctx_tracing::ContextFields;
use ctx_vars::{Context, ContextVar, context_var};

#[context_var]
static REQUEST_ID: u64;

#[context_var]
static TENANT: String;

#[context_var]
static ROLES: Vec<&'static str>;

static REGION: ContextVar<&str> = ContextVar::with_default("region", || "eu");

fn fields() -> ContextFields {
    ContextFields::new()
        .display_as("request_id", &REQUEST_ID)
        .display_as("tenant", &TENANT)
}

/// Runs `f` with a text subscriber (no time, no colours) and returns its lines.
fn text(fields: ContextFields, f: impl FnOnce()) -> Vec<String> {
    let out = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .without_time()
        .with_ansi(false)
        .with_writer(out.clone())
        .map_event_format(|format| fields.wrap(format))
        .finish();
    tracing::subscriber::with_default(subscriber, || Context::new().run(f));
    out.lines()
}

/// Runs `f` with a JSON subscriber and returns its lines, parsed.
fn json(fields: ContextFields, f: impl FnOnce()) -> Vec<serde_json::Value> {
    let out = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(out.clone())
        .map_event_format(|format| fields.wrap(format))
        .finish();
    tracing::subscriber::with_default(subscriber, || Context::new().run(f));
    out.lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[test]
fn text_lines_end_with_the_variables_set_where_the_event_is_emitted() {
    let lines = text(fields(), || {
        tracing::info!("before");
        REQUEST_ID.set(7);
        TENANT.set("acme".into());
        tracing::info!(amount = 3, "charged");
        REQUEST_ID.sync_scope(8, || tracing::warn!("inner"));
    });
    assert_eq!(
        lines,
        [
            " INFO log_lines: before",
            " INFO log_lines: charged amount=3 request_id=7 tenant=acme",
            " WARN log_lines: inner request_id=8 tenant=acme",
        ]
    );
}

#[test]
fn json_lines_get_the_variables_as_top_level_members() {
    let lines = json(fields(), || {
        tracing::info!("before");
        REQUEST_ID.set(7);
        TENANT.set("ac\"me\n".into());
        tracing::info!(amount = 3, "charged");
    });
    assert_eq!(lines.len(), 2);
    assert!(lines[0].get("request_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[0]["message"], "before");
    assert_eq!(lines[1]["request_id"], "7");
    assert_eq!(lines[1]["tenant"], "ac\"me\n", "escaped and read back");
    assert_eq!(lines[1]["amount"], 3);
    assert_eq!(lines[1]["message"], "charged");
    assert_eq!(lines[1]["level"], "INFO");
}

#[test]
fn debug_fields_defaults_and_placeholders() {
    let fields = ContextFields::new()
        .debug(&ROLES)
        .display(&REGION)
        .display_as("request_id", &REQUEST_ID)
        .unset_as("-");
    let lines = text(fields.clone(), || {
        ROLES.set(vec!["admin"]);
        tracing::info!("hi");
    });
    assert_eq!(
        lines,
        [r#" INFO log_lines: hi ROLES=["admin"] region=eu request_id=-"#]
    );
    let lines = json(fields, || tracing::info!("hi"));
    assert_eq!(lines[0]["ROLES"], "-");
    assert_eq!(lines[0]["region"], "eu");
}

/// The line `info!("hi")` writes with `REQUEST_ID` set, through `format` (wrapped) on a
/// writer that allows colours.
fn one_line_through(format: tracing_subscriber::fmt::format::Format) -> String {
    let out = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(out.clone())
        .with_ansi(true)
        .event_format(fields().wrap(format.without_time()))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        Context::new().run(|| {
            REQUEST_ID.set(7);
            tracing::info!("hi");
        });
    });
    out.lines().remove(0)
}

#[test]
fn colours_follow_the_format() {
    let line = one_line_through(tracing_subscriber::fmt::format().with_ansi(true));
    assert!(line.contains("\u{1b}[32m INFO\u{1b}[0m"), "{line:?}");
    assert!(
        line.ends_with("\u{1b}[3mrequest_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m7"),
        "{line:?}"
    );
}

/// A format told not to colour (as for a file) while the writer allows colours: the
/// fields are as plain as the rest of the line.
#[test]
fn plain_format_plain_fields_whatever_the_writer() {
    let line = one_line_through(tracing_subscriber::fmt::format().with_ansi(false));
    assert_eq!(line, " INFO log_lines: hi request_id=7");
}

/// tracing itself drops an event emitted while the subscriber handles another; the
/// formatter must neither panic on its reused buffers nor lose the outer line.
#[test]
fn an_event_logged_while_a_value_is_formatted_does_no_harm() {
    struct Noisy;
    impl std::fmt::Display for Noisy {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            tracing::info!("from inside Display");
            f.write_str("noisy")
        }
    }
    static NOISY: ContextVar<Noisy> = ContextVar::new("noisy");
    let lines = text(ContextFields::new().display(&NOISY), || {
        NOISY.set(Noisy);
        tracing::info!("outer");
    });
    assert_eq!(lines, [" INFO log_lines: outer noisy=noisy"]);
}

#[test]
fn common_types_are_written_as_their_display_would() {
    static UNSIGNED: ContextVar<u64> = ContextVar::new("unsigned");
    static SIGNED: ContextVar<i64> = ContextVar::new("signed");
    static SMALL: ContextVar<i32> = ContextVar::new("small");
    static SIZE: ContextVar<usize> = ContextVar::new("size");
    static OWNED: ContextVar<String> = ContextVar::new("owned");
    static FLOAT: ContextVar<f64> = ContextVar::new("float");
    let fields = ContextFields::new()
        .display(&UNSIGNED)
        .display(&SIGNED)
        .display(&SMALL)
        .display(&SIZE)
        .display(&OWNED)
        .display(&FLOAT);
    for (u, i, s) in [(0, 0, 0), (u64::MAX, i64::MIN, i32::MIN), (10, -7, 42)] {
        let lines = text(fields.clone(), || {
            UNSIGNED.set(u);
            SIGNED.set(i);
            SMALL.set(s);
            SIZE.set(usize::MAX);
            OWNED.set("a b".to_owned());
            FLOAT.set(-0.5);
            tracing::info!("x");
        });
        let expected = format!(
            " INFO log_lines: x unsigned={u} signed={i} small={s} size={} owned=a b float=-0.5",
            usize::MAX
        );
        assert_eq!(lines, [expected]);
    }
}

/// A line's fields are kept per thread and reused while the context holds the same
/// values: every way of changing those values must show on the next line.
#[test]
fn kept_fields_follow_every_change_of_the_context() {
    let lines = text(fields(), || {
        REQUEST_ID.set(7);
        TENANT.set("acme".into());
        tracing::info!("a");
        tracing::info!("a again");
        // Written in place (the context is nobody else's): the kept fields must notice.
        REQUEST_ID.set(8);
        tracing::info!("b");
        let token = TENANT.set("globex".into());
        tracing::info!("c");
        TENANT.reset(token).unwrap();
        tracing::info!("d");
        REQUEST_ID.sync_scope(9, || tracing::info!("e"));
        tracing::info!("f");
        Context::new()
            .with_value(&REQUEST_ID, 1)
            .run(|| tracing::info!("g"));
        Context::new().run(|| tracing::info!("h"));
        let snapshot = Context::current();
        REQUEST_ID.set(10);
        tracing::info!("i");
        drop(snapshot);
        tracing::info!("j");
    });
    assert_eq!(
        lines,
        [
            " INFO log_lines: a request_id=7 tenant=acme",
            " INFO log_lines: a again request_id=7 tenant=acme",
            " INFO log_lines: b request_id=8 tenant=acme",
            " INFO log_lines: c request_id=8 tenant=globex",
            " INFO log_lines: d request_id=8 tenant=acme",
            " INFO log_lines: e request_id=9 tenant=acme",
            " INFO log_lines: f request_id=8 tenant=acme",
            " INFO log_lines: g request_id=1",
            " INFO log_lines: h",
            " INFO log_lines: i request_id=10 tenant=acme",
            " INFO log_lines: j request_id=10 tenant=acme",
        ]
    );
}

/// More formats on one thread than it keeps fields for, text and JSON, each with
/// fields of its own, every line alternating between them.
#[test]
fn formats_side_by_side_each_write_their_own_fields() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    let sets: Vec<ContextFields> = vec![
        fields(),
        ContextFields::new().display(&REGION),
        ContextFields::new().display_as("rid", &REQUEST_ID),
        ContextFields::new().display_as("t", &TENANT).unset_as("-"),
        ContextFields::new()
            .display_as("t", &TENANT)
            .display_as("rid", &REQUEST_ID),
        fields(),
    ];
    let captures: Vec<(Capture, bool)> = (0..sets.len() * 2)
        .map(|i| (Capture::default(), i % 2 == 1))
        .collect();
    let layers: Vec<_> = captures
        .iter()
        .enumerate()
        .map(|(i, (out, is_json))| {
            let fields = sets[i / 2].clone();
            let layer = tracing_subscriber::fmt::layer().with_writer(out.clone());
            if *is_json {
                layer
                    .json()
                    .flatten_event(true)
                    .map_event_format(|format| fields.wrap(format))
                    .boxed()
            } else {
                layer
                    .without_time()
                    .with_ansi(false)
                    .map_event_format(|format| fields.wrap(format))
                    .boxed()
            }
        })
        .collect();
    let subscriber = tracing_subscriber::registry().with(layers);
    tracing::subscriber::with_default(subscriber, || {
        Context::new().run(|| {
            tracing::info!("one");
            REQUEST_ID.set(7);
            tracing::info!("two");
            TENANT.set("acme".into());
            tracing::info!("three");
            tracing::info!("four");
        });
    });
    let expected: [&[&str]; 6] = [
        &[
            "",
            " request_id=7",
            " request_id=7 tenant=acme",
            " request_id=7 tenant=acme",
        ],
        &[" region=eu"; 4],
        &["", " rid=7", " rid=7", " rid=7"],
        &[" t=-", " t=-", " t=acme", " t=acme"],
        &["", " rid=7", " t=acme rid=7", " t=acme rid=7"],
        &[
            "",
            " request_id=7",
            " request_id=7 tenant=acme",
            " request_id=7 tenant=acme",
        ],
    ];
    for (i, (out, is_json)) in captures.iter().enumerate() {
        let lines = out.lines();
        assert_eq!(lines.len(), 4, "format {i}");
        for (line, (fields, message)) in lines
            .iter()
            .zip(expected[i / 2].iter().zip(["one", "two", "three", "four"]))
        {
            if *is_json {
                let line: serde_json::Value = serde_json::from_str(line).expect("JSON");
                assert_eq!(line["message"], message, "format {i}");
                let mut got = String::new();
                for pair in fields.split(' ').filter(|pair| !pair.is_empty()) {
                    let (name, _) = pair.split_once('=').unwrap();
                    got.push_str(&format!(" {name}={}", line[name].as_str().unwrap()));
                }
                assert_eq!(&got, fields, "format {i}: {line}");
            } else {
                assert_eq!(
                    *line,
                    format!(" INFO log_lines: {message}{fields}"),
                    "format {i}"
                );
            }
        }
    }
}

/// A type with a `Display` of its own may show state that changes without a `set`:
/// its fields are written afresh on every line.
#[test]
fn a_display_of_its_own_is_called_for_every_line() {
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Progress(AtomicU64);
    impl std::fmt::Display for Progress {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}%", self.0.load(Ordering::Relaxed))
        }
    }
    static PROGRESS: ContextVar<Progress> = ContextVar::new("progress");
    let lines = text(fields().display(&PROGRESS), || {
        REQUEST_ID.set(7);
        PROGRESS.set(Progress(AtomicU64::new(10)));
        tracing::info!("a");
        PROGRESS.with(|progress| progress.unwrap().0.store(90, Ordering::Relaxed));
        tracing::info!("b");
    });
    assert_eq!(
        lines,
        [
            " INFO log_lines: a request_id=7 progress=10%",
            " INFO log_lines: b request_id=7 progress=90%",
        ]
    );
}

/// What a logged line keeps on its thread holds no value: a context's values (a
/// database transaction, say) are dropped when the context goes, logged or not.
#[test]
fn logging_keeps_no_value_alive() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Transaction(Arc<AtomicBool>);
    impl Drop for Transaction {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    static TRANSACTION: ContextVar<Transaction> = ContextVar::new("transaction");
    let dropped = Arc::new(AtomicBool::new(false));
    let lines = text(fields(), || {
        let mut request = Context::new()
            .with_value(&REQUEST_ID, 7)
            .with_value(&TRANSACTION, Transaction(Arc::clone(&dropped)));
        request.run(|| {
            tracing::info!("a");
            tracing::info!("b");
        });
        drop(request);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the transaction outlived its context"
        );
    });
    assert_eq!(lines.len(), 2);
}

/// A value from the wire must not reach a terminal as an escape sequence: text lines
/// escape what tracing-subscriber escapes in event fields.
#[test]
fn terminal_controls_in_values_are_escaped_in_text() {
    struct Shown(&'static str);
    impl std::fmt::Display for Shown {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    static SHOWN: ContextVar<Shown> = ContextVar::new("shown");
    let hostile = "a\u{1b}[31mred\u{7}\u{8}\u{c}\u{7f}\u{9b}2Jé\\n";
    let lines = text(fields(), || {
        TENANT.set(hostile.into());
        tracing::info!("x");
    });
    let escaped = r"a\x1b[31mred\x07\x08\x0c\x7f\u{9b}2Jé\n";
    assert_eq!(lines, [format!(" INFO log_lines: x tenant={escaped}")]);
    let lines = text(ContextFields::new().display(&SHOWN), || {
        SHOWN.set(Shown(hostile));
        tracing::info!("x");
    });
    assert_eq!(lines, [format!(" INFO log_lines: x shown={escaped}")]);
    // JSON escapes every control character already.
    let lines = json(fields(), || {
        TENANT.set(hostile.into());
        tracing::info!("x");
    });
    assert_eq!(lines[0]["tenant"], hostile);
}

/// A default builder that panics part-way through a line: what was written of that line's
/// fields must not be kept for another line to copy.
#[test]
fn a_panic_while_writing_fields_leaves_nothing_for_another_line() {
    static FRAGILE: ContextVar<String> =
        ContextVar::with_default("fragile", || panic!("no default for you"));
    let fields = ContextFields::new()
        .display_as("request_id", &REQUEST_ID)
        .display_as("fragile", &FRAGILE);
    let lines = text(fields, || {
        let mut first = Context::new()
            .with_value(&REQUEST_ID, 1)
            .with_value(&FRAGILE, "ok".to_string());
        let mut second = Context::new().with_value(&REQUEST_ID, 2);
        first.run(|| tracing::info!("one"));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            second.run(|| tracing::info!("two"));
        }));
        assert!(panicked.is_err(), "the default builder panics");
        first.run(|| tracing::info!("three"));
    });
    assert_eq!(
        lines,
        [
            " INFO log_lines: one request_id=1 fragile=ok",
            " INFO log_lines: three request_id=1 fragile=ok",
        ]
    );
}

/// A value from the wire cannot start a line of its own, nor hide a control character.
#[test]
fn text_values_escape_every_control_character() {
    let lines = text(fields(), || {
        TENANT.set("a\n INFO log_lines: forged\r\0\x0b\t\x1b[2J\x7f\u{85}é".into());
        tracing::info!("real");
    });
    assert_eq!(
        lines,
        [r" INFO log_lines: real tenant=a\n INFO log_lines: forged\r\x00\x0b\t\x1b[2J\x7f\u{85}é"]
    );
}

/// A text line that happens to start with `{` is still text: the fields go at its end.
#[test]
fn a_text_line_starting_with_a_brace_gets_text_fields() {
    let out = Capture::default();
    let fields = fields();
    let subscriber = tracing_subscriber::fmt()
        .without_time()
        .with_ansi(false)
        .with_level(false)
        .with_target(false)
        .with_writer(out.clone())
        .map_event_format(|format| fields.wrap(format))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        Context::new().run(|| {
            REQUEST_ID.set(7);
            tracing::info!(r#"{{"looks":"like json"}}"#);
        });
    });
    assert_eq!(out.lines(), [r#"{"looks":"like json"} request_id=7"#]);
}

/// A field named as a member the JSON format writes itself is refused when the format
/// is configured, naming the clash; text formats take any name.
#[test]
fn a_json_field_named_like_the_formats_own_members_is_refused() {
    for name in [
        "message",
        "level",
        "target",
        "timestamp",
        "fields",
        "span",
        "spans",
    ] {
        let fields = ContextFields::new().display_as(name, &TENANT);
        let message = ctx_tests::expect_panic(|| {
            tracing_subscriber::fmt()
                .json()
                .map_event_format(|format| fields.clone().wrap(format))
        });
        assert!(message.contains(&format!("{name:?}")), "{message}");
        let lines = text(fields, || {
            TENANT.set("acme".into());
            tracing::info!("fine");
        });
        assert_eq!(lines, [format!(" INFO log_lines: fine {name}=acme")]);
    }
}

/// One huge value is written, and then let go of: the thread keeps small buffers.
#[test]
fn a_huge_value_leaves_no_huge_buffers_behind() {
    let huge = "x".repeat(8 << 20);
    let kept = std::thread::spawn(move || {
        let lines = text(fields(), || {
            TENANT.set(huge);
            tracing::info!("big");
        });
        assert_eq!(
            lines[0].len(),
            " INFO log_lines: big tenant=".len() + (8 << 20)
        );
        ctx_tracing::__kept_capacity()
    })
    .join()
    .unwrap();
    assert!(kept <= 128 * 1024, "{kept} bytes kept");
}
