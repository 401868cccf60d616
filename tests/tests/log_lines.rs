//! What ctx-tracing's wrapped formatters write, captured from a real `fmt` subscriber.

use ctx_core::{Context, ContextVar, context_var};
use ctx_tests::Capture;
use ctx_tracing::ContextFields;

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

#[test]
fn colours_follow_the_format() {
    let out = Capture::default();
    let fields = fields();
    let subscriber = tracing_subscriber::fmt()
        .without_time()
        .with_writer(out.clone())
        .with_ansi(true)
        .event_format(fields.wrap(tracing_subscriber::fmt::format().with_ansi(true)))
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        Context::new().run(|| {
            REQUEST_ID.set(7);
            tracing::info!("hi");
        });
    });
    let line = &out.lines()[0];
    assert!(line.contains("\u{1b}[32m INFO\u{1b}[0m"), "{line:?}");
    assert!(
        line.ends_with("\u{1b}[3mrequest_id\u{1b}[0m\u{1b}[2m=\u{1b}[0m7"),
        "{line:?}"
    );
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
