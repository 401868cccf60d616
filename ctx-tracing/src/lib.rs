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
//! use ctx_core::context_var;
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
//! A variable that is not set (nor has a default) where an event is emitted adds nothing
//! to the line, unless [`ContextFields::unset_as`] gives a placeholder.
//!
//! Values are written with their `Display` ([`ContextFields::display`]) or `Debug`
//! ([`ContextFields::debug`]) implementation; in JSON, as strings. In text, colours of
//! the wrapped line follow the format's own setting
//! (`tracing_subscriber::fmt::format().with_ansi(true)`): the layer's colour setting
//! does not reach a wrapped formatter. Field names are not checked against the event's
//! own fields: an event field with the same name appears twice.
//!
//! Spans do not get the variables as fields: a span's fields are fixed by its call site,
//! so there is nothing to record them into.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::any::Any;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use ctx_core::{Context, ContextVar};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Which context variables go on every log line, and under which names.
#[derive(Clone, Default)]
pub struct ContextFields {
    fields: Vec<Field>,
    unset: Option<&'static str>,
}

/// How fields are written: `name=value` pairs, or JSON object members.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Json,
}

/// Writes `prefix` and then the variable's value in `context` (or its default) to the
/// buffer, as the mode wants it; `None`, with nothing written, when there is no value.
type WriteField = dyn Fn(&Context, &mut String, &str, Mode) -> Option<fmt::Result> + Send + Sync;

/// `prefix`, then `value` (escaped, and closed with a quote, for JSON).
fn write_field(out: &mut String, prefix: &str, value: Value<'_>, mode: Mode) -> fmt::Result {
    out.push_str(prefix);
    match mode {
        Mode::Text => value.write_to(out),
        Mode::Json => {
            value.write_to(&mut JsonString(&mut *out))?;
            out.push('"');
            Ok(())
        }
    }
}

/// A value on its way to a line: the common types written directly, anything else
/// through `Display`, whose machinery costs more than the rest of a field.
enum Value<'a> {
    Text(&'a str),
    Unsigned(u64),
    Signed(i64),
    Formatted(&'a dyn fmt::Display),
}

impl<'a> Value<'a> {
    /// `value`, written as its `Display` would.
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
            Value::Formatted(value)
        }
    }

    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match *self {
            Value::Text(text) => out.write_str(text),
            Value::Unsigned(n) => out.write_str(itoa::Buffer::new().format(n)),
            Value::Signed(n) => out.write_str(itoa::Buffer::new().format(n)),
            Value::Formatted(value) => write!(out, "{value}"),
        }
    }
}

/// One variable: its field name, what goes before its value, and how to read it.
#[derive(Clone)]
struct Field {
    name: &'static str,
    /// ` name=`, in plain text and with tracing-subscriber's colours (an italic name, a
    /// dimmed `=`), and `"name":"` for JSON: written in one piece.
    text: Box<str>,
    ansi: Box<str>,
    json: Box<str>,
    write: Arc<WriteField>,
}

/// Shows a value with its `Debug` implementation.
struct AsDebug<'a, T>(&'a T);

impl<T: fmt::Debug> fmt::Display for AsDebug<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
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
        self.push(name, move |context, out, prefix, mode| {
            match context.get(var) {
                Some(value) => Some(write_field(out, prefix, Value::of(value), mode)),
                // Not set: the variable's default, if it has one.
                None => var.with(|value| {
                    value.map(|value| write_field(out, prefix, Value::of(value), mode))
                }),
            }
        })
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
        self.push(name, move |context, out, prefix, mode| {
            let write = |out: &mut String, value: &T| {
                write_field(out, prefix, Value::Formatted(&AsDebug(value)), mode)
            };
            match context.get(var) {
                Some(value) => Some(write(out, value)),
                None => var.with(|value| value.map(|value| write(out, value))),
            }
        })
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
    pub fn wrap<E>(self, inner: E) -> ContextFormat<E> {
        ContextFormat {
            inner,
            fields: self,
        }
    }

    fn push(
        mut self,
        name: &'static str,
        write: impl Fn(&Context, &mut String, &str, Mode) -> Option<fmt::Result> + Send + Sync + 'static,
    ) -> Self {
        let mut json = String::from("\"");
        let _ = JsonString(&mut json).write_str(name);
        json.push_str("\":\"");
        self.fields.push(Field {
            name,
            text: format!(" {name}=").into(),
            ansi: format!(" \x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m").into(),
            json: json.into(),
            write: Arc::new(write),
        });
        self
    }

    /// Appends the fields that have a value in the current context to `out`, as `mode`
    /// wants them; whether it wrote any.
    fn write_fields(&self, out: &mut String, mode: Mode, ansi: bool) -> Result<bool, fmt::Error> {
        if self.fields.is_empty() {
            return Ok(false);
        }
        // One snapshot for all fields: a reference count, where reading each variable
        // on its own would take one per field.
        let context = Context::current();
        let mut any = false;
        for field in &self.fields {
            let prefix = match mode {
                Mode::Text if ansi => &field.ansi,
                Mode::Text => &field.text,
                Mode::Json => &field.json,
            };
            let start = out.len();
            if any && mode == Mode::Json {
                out.push(',');
            }
            match ((field.write)(&context, out, prefix, mode), self.unset) {
                (Some(written), _) => written?,
                (None, Some(placeholder)) => {
                    write_field(out, prefix, Value::Text(placeholder), mode)?;
                }
                (None, None) => {
                    out.truncate(start);
                    continue;
                }
            }
            any = true;
        }
        Ok(any)
    }

    /// Writes `line`, a formatted event, to `out` with the fields added: as the first
    /// members of a JSON object (a line that starts with `{`), else as `name=value` pairs
    /// before the line's end. The fields are appended to `line` first, so that `out`
    /// gets a few large writes.
    fn write_line(&self, out: &mut Writer<'_>, line: &mut String) -> fmt::Result {
        if line.starts_with('{') {
            let end = line.len();
            if !self.write_fields(line, Mode::Json, false)? {
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
            line.pop();
        }
        self.write_fields(line, Mode::Text, out.has_ansi_escapes())?;
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
}

impl<E> ContextFormat<E> {
    /// The wrapped formatter.
    pub fn inner(&self) -> &E {
        &self.inner
    }

    /// The wrapped formatter, to change its settings.
    pub fn inner_mut(&mut self) -> &mut E {
        &mut self.inner
    }
}

thread_local! {
    /// The wrapped formatter's line: reused, so that an event allocates nothing once the
    /// buffer has grown. (Writing through a splicing adapter instead costs more than the
    /// copy: every small write of the wrapped formatter would go through it.)
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
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
        let mut format = |line: &mut String| {
            line.clear();
            self.inner.format_event(ctx, Writer::new(line), event)?;
            self.fields.write_line(&mut writer, line)
        };
        // Formatting within formatting (a value's `Display` that logs) gets a buffer of
        // its own.
        let reused = LINE.try_with(|line| {
            let mut line = line.try_borrow_mut().ok()?;
            Some(format(&mut line))
        });
        match reused {
            Ok(Some(done)) => done,
            Ok(None) | Err(_) => format(&mut String::new()),
        }
    }
}
