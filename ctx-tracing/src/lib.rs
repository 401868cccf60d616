//! ctx context variables as fields on every [`tracing`](https://docs.rs/tracing) log line: `request_id=…
//! tenant=…` in text, and **top-level** `"request_id":"…"` fields in JSON.
//!
//! A service keeps a request id or a tenant in ambient context mostly to see it on every
//! log line, including lines from spawned tasks, blocking jobs, database code and
//! libraries that know nothing of the request. Spans carry fields too, but nested (in
//! JSON, under `"span"`/`"spans"`) and only where a span was entered; a context value is
//! wherever the request's context went, and appears at the top of the line where log
//! stores index it.
//!
//! List the variables once, on a [`ContextFields`], and wrap the event formatter of the
//! `tracing-subscriber` `fmt` builder or layer you already have:
//!
//! ```
//! use ctx_vars::context_var;
//! use ctx_tracing::ContextFields;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//! #[context_var]
//! static TENANT: String;
//!
//! let fields = ContextFields::new()
//!     .display_as("request_id", &REQUEST_ID)
//!     .display_as("tenant", &TENANT);
//!
//! // Text: `… INFO app: charged amount=3 request_id=7 tenant=acme`
//! let text = tracing_subscriber::fmt().map_event_format(|format| fields.clone().wrap(format));
//! // JSON: `{"request_id":"7","tenant":"acme","timestamp":…,"fields":{…},…}`
//! let json = tracing_subscriber::fmt()
//!     .json()
//!     .map_event_format(|format| fields.wrap(format));
//! # let _ = (text, json);
//! ```
//!
//! Both forms also work on `tracing_subscriber::fmt::layer()` (`map_event_format` on the
//! layer), beside other layers in a `Registry`.
//!
//! # How, and why this way
//!
//! [`ContextFormat`] is a [`FormatEvent`] wrapper: the stock formatter writes the line
//! (every option you set on it still applies), and the variables set in the current
//! context are added to it, as the last `name=value` pairs of a text line or as the
//! first members of a JSON object. A [`Layer`](tracing_subscriber::Layer) could not do
//! that: tracing events carry only the fields their call site declares, and the JSON
//! formatter writes nothing but those and span fields. The formatter runs on the thread
//! that emits the event, inside the task that emits it, which is what makes the current
//! context the event's own.
//!
//! A line costs about what the stock formatter's does (BENCHMARKS.md): the fields a
//! format wrote last are kept on each thread, with a [`Stamp`] of the
//! context they came from, and the next line in a context that still holds the same
//! values copies them in one piece. Only fields whose types ctx-tracing writes itself
//! (`String`, `&str` and the common integers) are kept: a `Display` of your own may show
//! state that changes without a `set`, so a set of fields with one is written afresh on
//! every line. The stamp holds no value: a context's values are dropped when it goes,
//! logged or not.
//!
//! A variable that is not set (nor has a default) where an event is emitted adds nothing
//! to the line, unless [`ContextFields::unset_as`] gives a placeholder.
//!
//! Values are written with their `Display` ([`ContextFields::display`]) or `Debug`
//! ([`ContextFields::debug`]) implementation; in JSON, as strings. In text, the fields
//! are coloured exactly when the rest of the line is: the wrapped format's own setting
//! (`tracing_subscriber::fmt::format().with_ansi(..)`) or else the writer's, as the
//! stock formatter decides. Field names are not checked against the event's
//! own fields: an event field with the same name appears twice.
//!
//! Spans do not get the variables as fields: a span's fields are fixed by its call site,
//! so there is nothing to record them into.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::any::Any;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ctx_vars::{Context, ContextVar, Stamp};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Which context variables go on every log line, and under which names.
#[derive(Clone, Default)]
pub struct ContextFields {
    fields: Vec<Field>,
    unset: Option<&'static str>,
    /// Whether some field's type may write differently from one line to the next with
    /// the same value (a `Display` of its own can show interior state): such fields are
    /// written afresh on every line instead of being kept (see [`Rendered`]).
    impure: bool,
}

/// How fields are written: `name=value` pairs, or JSON object members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Text,
    Json,
}

/// Reads a variable's value in a context (set values only, not its default).
type Read = dyn for<'a> Fn(&'a Context) -> Option<Value<'a>> + Send + Sync;

/// Writes `prefix` and then the variable's default to the buffer, as the mode wants it;
/// `None`, with nothing written, when the variable has no default.
type WriteDefault = dyn Fn(&mut String, &str, Mode) -> Option<fmt::Result> + Send + Sync;

/// `prefix`, then `value`: with terminal controls escaped in text, and as the inside of
/// a string (closed with a quote) in JSON.
#[inline]
fn write_field(out: &mut String, prefix: &str, value: Value<'_>, mode: Mode) -> fmt::Result {
    out.push_str(prefix);
    match mode {
        // Integers cannot hold a terminal control: no scan.
        Mode::Text => match value {
            Value::Unsigned(_) | Value::Signed(_) => value.write_to(out),
            _ => value.write_to(&mut TerminalSafe(out)),
        },
        Mode::Json => {
            value.write_to(&mut JsonString(&mut *out))?;
            out.push('"');
            Ok(())
        }
    }
}

/// A value on its way to a line: the common types written directly, anything else
/// through `Display` or `Debug`, whose machinery costs more than the rest of a field.
enum Value<'a> {
    Text(&'a str),
    Unsigned(u64),
    Signed(i64),
    Display(&'a dyn fmt::Display),
    Debug(&'a dyn fmt::Debug),
}

impl<'a> Value<'a> {
    /// `value`, written as its `Display` would.
    #[inline]
    fn of<T: fmt::Display + 'static>(value: &'a T) -> Self {
        let any: &dyn Any = value;
        if let Some(text) = any.downcast_ref::<String>() {
            Value::Text(text)
        } else if let Some(text) = any.downcast_ref::<&'static str>() {
            Value::Text(text)
        } else if let Some(&n) = any.downcast_ref::<u64>() {
            Value::Unsigned(n)
        } else if let Some(&n) = any.downcast_ref::<u32>() {
            Value::Unsigned(n.into())
        } else if let Some(&n) = any.downcast_ref::<usize>() {
            Value::Unsigned(n as u64)
        } else if let Some(&n) = any.downcast_ref::<i64>() {
            Value::Signed(n)
        } else if let Some(&n) = any.downcast_ref::<i32>() {
            Value::Signed(n.into())
        } else {
            Value::Display(value)
        }
    }

    #[inline]
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match *self {
            Value::Text(text) => out.write_str(text),
            Value::Unsigned(n) => out.write_str(itoa::Buffer::new().format(n)),
            Value::Signed(n) => out.write_str(itoa::Buffer::new().format(n)),
            Value::Display(value) => write!(out, "{value}"),
            Value::Debug(value) => write!(out, "{value:?}"),
        }
    }
}

/// Whether values of `T` are written by ctx-tracing itself ([`Value::of`]), always the
/// same way for the same value: a line's fields can then be kept and reused.
fn is_plain<T: 'static>() -> bool {
    use std::any::TypeId;
    [
        TypeId::of::<String>(),
        TypeId::of::<&'static str>(),
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
        TypeId::of::<i32>(),
    ]
    .contains(&TypeId::of::<T>())
}

/// What names tracing-subscriber's JSON format in its type: `Format<Json, _>`.
const JSON_FORMAT: &str = "tracing_subscriber::fmt::format::json::Json";

/// The members tracing-subscriber's JSON format writes itself, at the top level of a
/// line (`flatten_event` puts the event's own fields there too).
const JSON_MEMBERS: [&str; 10] = [
    "timestamp",
    "level",
    "message",
    "target",
    "fields",
    "span",
    "spans",
    "threadName",
    "threadId",
    "filename",
];

/// One variable: its field name, what goes before its value, and how to read it.
#[derive(Clone)]
struct Field {
    name: &'static str,
    /// ` name=`, in plain text and with tracing-subscriber's colours (an italic name, a
    /// dimmed `=`), and `"name":"` for JSON: written in one piece.
    text: Box<str>,
    ansi: Box<str>,
    json: Box<str>,
    read: Arc<Read>,
    default: Arc<WriteDefault>,
}

impl ContextFields {
    /// No fields yet.
    pub fn new() -> Self {
        ContextFields::default()
    }

    /// Adds `var`, under its own name, written with `Display`.
    #[must_use]
    pub fn display<T>(self, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        self.display_as(var.name(), var)
    }

    /// Adds `var` under the field name `name`, written with `Display`.
    #[must_use]
    pub fn display_as<T>(self, name: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + Send + Sync + 'static,
    {
        self.push(
            name,
            is_plain::<T>(),
            move |context| context.get(var).map(Value::of),
            move |out, prefix, mode| {
                var.with(|value| {
                    value.map(|value| write_field(out, prefix, Value::of(value), mode))
                })
            },
        )
    }

    /// Adds `var`, under its own name, written with `Debug`.
    #[must_use]
    pub fn debug<T>(self, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Debug + Send + Sync + 'static,
    {
        self.debug_as(var.name(), var)
    }

    /// Adds `var` under the field name `name`, written with `Debug`.
    #[must_use]
    pub fn debug_as<T>(self, name: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Debug + Send + Sync + 'static,
    {
        self.push(
            name,
            is_plain::<T>(),
            move |context| context.get(var).map(|value| Value::Debug(value)),
            move |out, prefix, mode| {
                var.with(|value| {
                    value.map(|value| write_field(out, prefix, Value::Debug(value), mode))
                })
            },
        )
    }

    /// Writes `placeholder` for variables that are not set where an event is emitted
    /// (by default they are left out of the line).
    #[must_use]
    pub fn unset_as(mut self, placeholder: &'static str) -> Self {
        self.unset = Some(placeholder);
        self
    }

    /// Wraps an event formatter (such as `tracing_subscriber::fmt::format()` or its
    /// `.json()`) so that its lines carry these fields.
    ///
    /// Whether the lines are JSON objects (the fields become their first members) or
    /// text (`name=value` pairs at the end) is told by the formatter's type:
    /// tracing-subscriber's JSON format writes JSON, every other format text. A
    /// formatter of your own that writes JSON objects says so with
    /// [`ContextFormat::json_lines`].
    ///
    /// # Panics
    ///
    /// For a JSON format, if a field is named as a member the format writes itself
    /// (`timestamp`, `level`, `message`, `target`, `fields`, `span`, `spans`, …): the line
    /// would have the key twice, and readers that keep the last would lose the value.
    pub fn wrap<E>(self, inner: E) -> ContextFormat<E> {
        static FORMATS: AtomicU64 = AtomicU64::new(0);
        let json = std::any::type_name::<E>().contains(JSON_FORMAT);
        ContextFormat {
            inner,
            fields: self,
            id: FORMATS.fetch_add(1, Ordering::Relaxed),
            mode: Mode::Text,
        }
        .json_lines(json)
    }

    fn push(
        mut self,
        name: &'static str,
        plain: bool,
        read: impl for<'a> Fn(&'a Context) -> Option<Value<'a>> + Send + Sync + 'static,
        default: impl Fn(&mut String, &str, Mode) -> Option<fmt::Result> + Send + Sync + 'static,
    ) -> Self {
        self.impure |= !plain;
        let mut json = String::from("\"");
        let _ = JsonString(&mut json).write_str(name);
        json.push_str("\":\"");
        self.fields.push(Field {
            name,
            text: format!(" {name}=").into(),
            ansi: format!(" \x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m").into(),
            json: json.into(),
            read: Arc::new(read),
            default: Arc::new(default),
        });
        self
    }

    /// Appends the fields that have a value in the current context to `out`, as `mode`
    /// wants them; whether it wrote any. Reuses what an earlier line of `format` on this
    /// thread wrote, when the current context still holds the same values.
    fn append_fields(
        &self,
        format: u64,
        out: &mut String,
        mode: Mode,
        ansi: bool,
        kept: &mut Vec<Rendered>,
    ) -> Result<bool, fmt::Error> {
        if self.fields.is_empty() {
            return Ok(false);
        }
        if self.impure {
            return self.render(&Context::current(), out, mode, ansi);
        }
        let key = (format, mode, ansi);
        let at = kept.iter().position(|rendered| rendered.key == key);
        if let Some(at) = at {
            let rendered = &kept[at];
            if rendered.stamp.is_current() {
                out.push_str(&rendered.fields);
                return Ok(rendered.any);
            }
        }
        // Out of `kept` while it is written: a panic part-way (a default builder, a
        // `Display`) must leave no half-written fields that a later line could reuse.
        let mut rendered = match at {
            Some(at) => kept.remove(at),
            None => Rendered {
                key,
                stamp: Context::new().stamp(),
                fields: String::new(),
                any: false,
            },
        };
        // One snapshot for all fields: a reference count, where reading each variable
        // on its own would take one per field.
        let context = Context::current();
        rendered.fields.clear();
        let any = self.render(&context, &mut rendered.fields, mode, ansi)?;
        out.push_str(&rendered.fields);
        // A huge value is written, not kept: its buffer would stay with the thread.
        if rendered.fields.capacity() <= Buffers::KEPT_CAPACITY {
            rendered.any = any;
            rendered.stamp = context.stamp();
            if kept.len() == Rendered::KEPT {
                kept.remove(0);
            }
            kept.push(rendered);
        }
        Ok(any)
    }

    /// Writes the fields that have a value in `context` to `out`, as `mode` wants them;
    /// whether it wrote any.
    fn render(
        &self,
        context: &Context,
        out: &mut String,
        mode: Mode,
        ansi: bool,
    ) -> Result<bool, fmt::Error> {
        let mut any = false;
        for field in &self.fields {
            let prefix = match mode {
                Mode::Text if ansi => &field.ansi,
                Mode::Text => &field.text,
                Mode::Json => &field.json,
            };
            if any && mode == Mode::Json {
                out.push(',');
            }
            if let Some(value) = (field.read)(context) {
                write_field(out, prefix, value, mode)?;
                any = true;
                continue;
            }
            // Not set: the variable's default, else the placeholder, else nothing.
            let start = out.len();
            match ((field.default)(out, prefix, mode), self.unset) {
                (Some(written), _) => written?,
                (None, Some(placeholder)) => {
                    write_field(out, prefix, Value::Text(placeholder), mode)?;
                }
                (None, None) => {
                    if any && mode == Mode::Json {
                        // The separator written for this field.
                        out.truncate(start - 1);
                    }
                    continue;
                }
            }
            any = true;
        }
        Ok(any)
    }

    /// Writes `line`, a formatted event, to `out` with the fields added: as the first
    /// members of a JSON object, else as `name=value` pairs before the line's end. The
    /// fields are appended to `line` first, so that `out` gets a few large writes.
    fn write_line(
        &self,
        format: u64,
        mode: Mode,
        out: &mut Writer<'_>,
        line: &mut String,
        kept: &mut Vec<Rendered>,
    ) -> fmt::Result {
        if mode == Mode::Json {
            if !line.starts_with('{') {
                // Not an object after all: nothing can be spliced into it.
                return out.write_str(line);
            }
            let end = line.len();
            if !self.append_fields(format, line, Mode::Json, false, kept)? {
                return out.write_str(line);
            }
            let (object, fields) = line.split_at(end);
            let rest = &object[1..];
            out.write_char('{')?;
            out.write_str(fields)?;
            if !rest.trim_start().starts_with('}') {
                out.write_char(',')?;
            }
            return out.write_str(rest);
        }
        let newline = line.ends_with('\n');
        if newline {
            line.truncate(line.len() - 1);
        }
        // Coloured exactly when the wrapped format coloured its own part of the line: its
        // setting (`format().with_ansi(..)`) wins over the writer's, and is not visible
        // from here, but its escapes are (tracing-subscriber escapes those in values).
        let ansi = out.has_ansi_escapes() && line.as_bytes().contains(&0x1b);
        self.append_fields(format, line, Mode::Text, ansi, kept)?;
        if newline {
            line.push('\n');
        }
        out.write_str(line)
    }
}

impl fmt::Debug for ContextFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.fields.iter().map(|field| field.name).collect();
        f.debug_struct("ContextFields")
            .field("fields", &names)
            .field("unset", &self.unset)
            .finish()
    }
}

/// Writes what it is given with every control character escaped: C0 (U+0000 to
/// U+001F, line breaks, tabs and `ESC` among them), `DEL` and C1 (U+0080 to U+009F). A
/// value from the wire (a baggage entry, a header) must not start a line of its own
/// that a reader would take for another event, nor recolour or rewrite a terminal.
struct TerminalSafe<'a>(&'a mut String);

impl fmt::Write for TerminalSafe<'_> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        // Values are almost always printable ASCII: one pass without an early exit
        // (so that it vectorizes) says so.
        let printable = value.bytes().fold(true, |printable, byte| {
            printable & (byte.wrapping_sub(0x20) < 0x5f)
        });
        if printable {
            self.0.push_str(value);
            return Ok(());
        }
        for ch in value.chars() {
            match ch {
                '\n' => self.0.push_str("\\n"),
                '\r' => self.0.push_str("\\r"),
                '\t' => self.0.push_str("\\t"),
                '\0'..='\x1f' | '\x7f' => write!(self.0, "\\x{:02x}", u32::from(ch))?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", u32::from(ch))?,
                _ => self.0.push(ch),
            }
        }
        Ok(())
    }
}

/// Writes what it is given as the inside of a JSON string literal.
struct JsonString<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for JsonString<'_, W> {
    fn write_str(&mut self, value: &str) -> fmt::Result {
        // Bytes, not chars: every byte that needs escaping is ASCII, and no byte of a
        // multi-byte character is.
        let mut start = 0;
        for (at, &byte) in value.as_bytes().iter().enumerate() {
            let escaped = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 => "",
                _ => continue,
            };
            self.0.write_str(&value[start..at])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escaped)?;
            }
            start = at + 1;
        }
        self.0.write_str(&value[start..])
    }
}

/// An event formatter whose lines carry context variables: made by
/// [`ContextFields::wrap`].
#[derive(Clone, Debug)]
pub struct ContextFormat<E> {
    inner: E,
    fields: ContextFields,
    /// Tells this format's kept fields from other formats' on the same thread.
    id: u64,
    /// Whether the wrapped formatter writes JSON objects or text lines.
    mode: Mode,
}

impl<E> ContextFormat<E> {
    /// Says whether the wrapped formatter writes each line as a JSON object (`true`: the
    /// fields become its first members) or as text (`false`: `name=value` pairs at the
    /// end). [`ContextFields::wrap`] tells this from the formatter's type; use this for a
    /// formatter of your own.
    ///
    /// # Panics
    ///
    /// With `true`, if a field is named as a member tracing-subscriber's JSON format
    /// writes itself (see [`ContextFields::wrap`]).
    #[must_use]
    pub fn json_lines(mut self, json: bool) -> Self {
        if json {
            if let Some(clash) = self
                .fields
                .fields
                .iter()
                .find(|field| JSON_MEMBERS.contains(&field.name))
            {
                panic!(
                    "ctx-tracing: the field name {:?} is a member the JSON format writes \
                     itself; the line would have the key twice and readers keeping the \
                     last would lose a value. Give the variable another field name with \
                     `ContextFields::display_as` or `debug_as`",
                    clash.name
                );
            }
        }
        self.mode = if json { Mode::Json } else { Mode::Text };
        self
    }

    /// The wrapped formatter.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped formatter, to change its settings.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }
}

/// The fields a format last wrote on a thread, with a [`Stamp`] of the context they
/// were read from: the next line in a context that still holds the same values (the
/// common case: a task or request logging several lines) copies them instead of
/// reading and writing every field again. The stamp keeps no value alive. Used only
/// when every field's type writes the same value the same way (see [`is_plain`]).
struct Rendered {
    key: (u64, Mode, bool),
    stamp: Stamp,
    fields: String,
    any: bool,
}

impl Rendered {
    /// Formats kept per thread: a text and a JSON layer side by side, and some room.
    const KEPT: usize = 4;
}

impl Buffers {
    /// The most a buffer keeps between lines: one huge line must not leave the thread
    /// holding its buffers for good.
    const KEPT_CAPACITY: usize = 64 * 1024;

    /// Lets go of what a huge line made a buffer grow to.
    fn shrink(&mut self) {
        if self.line.capacity() > Self::KEPT_CAPACITY {
            self.line = String::new();
        }
    }
}

/// A thread's buffers: reused, so that an event allocates nothing once they have grown.
#[derive(Default)]
struct Buffers {
    /// The wrapped formatter's line. (Writing through a splicing adapter instead costs
    /// more than the copy: every small write of the wrapped formatter would go through
    /// it.)
    line: String,
    kept: Vec<Rendered>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
}

/// The bytes this thread's buffers hold between lines: for tests of what one huge
/// line leaves behind.
#[doc(hidden)]
pub fn __kept_capacity() -> usize {
    BUFFERS
        .try_with(|buffers| {
            let buffers = buffers.borrow();
            buffers.line.capacity()
                + buffers
                    .kept
                    .iter()
                    .map(|rendered| rendered.fields.capacity())
                    .sum::<usize>()
        })
        .unwrap_or(0)
}

impl<S, N, E> FormatEvent<S, N> for ContextFormat<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut format = |buffers: &mut Buffers| {
            buffers.line.clear();
            self.inner
                .format_event(ctx, Writer::new(&mut buffers.line), event)?;
            let written = self.fields.write_line(
                self.id,
                self.mode,
                &mut writer,
                &mut buffers.line,
                &mut buffers.kept,
            );
            buffers.shrink();
            written
        };
        // Formatting within formatting (a value's `Display` that logs) gets buffers of
        // its own.
        let reused = BUFFERS.try_with(|buffers| {
            let mut buffers = buffers.try_borrow_mut().ok()?;
            Some(format(&mut buffers))
        });
        match reused {
            Ok(Some(done)) => done,
            Ok(None) | Err(_) => format(&mut Buffers::default()),
        }
    }
}
