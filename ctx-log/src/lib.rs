//! ctx context variables as key-values on every [`log`](https://docs.rs/log) record, so
//! that `env_logger` and every other `log` backend prints them.
//!
//! Many libraries log through `log`, not `tracing`. [`ContextLog`] wraps the logger you
//! already have: each record it is given is passed on with the variables set in the
//! current context appended to the record's own key-values (`log`'s `kv` feature), so a
//! backend that prints key-values (`env_logger` with its `kv` feature prints
//! `key=value` after the message) shows the request id of the task that logged, in
//! libraries that know nothing of it.
//!
//! ```
//! use ctx_vars::{Context, context_var};
//! use ctx_log::ContextLog;
//!
//! #[context_var]
//! static REQUEST_ID: u64;
//! #[context_var]
//! static TENANT: String;
//!
//! let inner = env_logger::Builder::new()
//!     .filter_level(log::LevelFilter::Info)
//!     .build();
//! let logger = ContextLog::new(inner)
//!     .display_as("request_id", &REQUEST_ID)
//!     .display_as("tenant", &TENANT);
//! let max_level = logger.max_level();
//! log::set_boxed_logger(Box::new(logger)).unwrap();
//! log::set_max_level(max_level);
//!
//! Context::new().run(|| {
//!     REQUEST_ID.set(7);
//!     // `[… INFO app] charged request_id=7`: no tenant is set, so none is printed.
//!     log::info!(target: "app", "charged");
//! });
//! ```
//!
//! The record is read where the `log!` call runs, on the thread and in the task that
//! logs, which is what makes the current context the record's own. A variable that is
//! not set (nor has a default) there adds nothing. Values are written with their
//! `Display` ([`ContextLog::display`]) or `Debug` ([`ContextLog::debug`]); the record's
//! own key-values come first, and a name is not checked against them. Records the inner
//! logger does not want ([`Log::enabled`]) are dropped before any variable is read.

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::fmt::{self, Write as _};

use ctx_vars::ContextVar;
use log::kv::{self, Key, Source, Value, VisitSource};
use log::{Log, Metadata, Record};

/// A [`Log`] that passes every record on to an inner logger with the chosen context
/// variables added as key-values. See the [crate documentation](crate).
pub struct ContextLog<L> {
    inner: L,
    fields: Vec<Field>,
}

/// One variable to add: its key, and how to write its current value.
struct Field {
    name: &'static str,
    /// Writes the variable's value in the current context, if it has one; whether it did.
    write: Box<dyn Fn(&mut String) -> bool + Send + Sync>,
}

impl<L> ContextLog<L> {
    /// Wraps `inner`; no variable is added until one is listed.
    pub fn new(inner: L) -> Self {
        ContextLog {
            inner,
            fields: Vec::new(),
        }
    }

    /// Adds `var` under its own name ([`ContextVar::name`]), written with `Display`.
    #[must_use]
    pub fn display<T: fmt::Display + Send + Sync + 'static>(
        self,
        var: &'static ContextVar<T>,
    ) -> Self {
        self.display_as(var.name(), var)
    }

    /// Adds `var` under the key `name`, written with `Display`.
    #[must_use]
    pub fn display_as<T: fmt::Display + Send + Sync + 'static>(
        self,
        name: &'static str,
        var: &'static ContextVar<T>,
    ) -> Self {
        self.field(name, move |out| {
            var.with(|value| value.map(|value| write!(out, "{value}")).is_some())
        })
    }

    /// Adds `var` under its own name, written with `Debug`.
    #[must_use]
    pub fn debug<T: fmt::Debug + Send + Sync + 'static>(self, var: &'static ContextVar<T>) -> Self {
        self.debug_as(var.name(), var)
    }

    /// Adds `var` under the key `name`, written with `Debug`.
    #[must_use]
    pub fn debug_as<T: fmt::Debug + Send + Sync + 'static>(
        self,
        name: &'static str,
        var: &'static ContextVar<T>,
    ) -> Self {
        self.field(name, move |out| {
            var.with(|value| value.map(|value| write!(out, "{value:?}")).is_some())
        })
    }

    fn field(
        mut self,
        name: &'static str,
        write: impl Fn(&mut String) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.fields.push(Field {
            name,
            write: Box::new(write),
        });
        self
    }

    /// The inner logger.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// The names of the variables added, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.fields.iter().map(|field| field.name)
    }
}

impl<L: Log> ContextLog<L> {
    /// The most verbose level any record can have to reach the inner logger, for
    /// [`log::set_max_level`]: asked of the inner logger through [`Log::enabled`].
    pub fn max_level(&self) -> log::LevelFilter {
        let levels = [
            log::Level::Trace,
            log::Level::Debug,
            log::Level::Info,
            log::Level::Warn,
            log::Level::Error,
        ];
        levels
            .into_iter()
            .find(|&level| {
                let metadata = Metadata::builder().level(level).build();
                self.inner.enabled(&metadata)
            })
            .map_or(log::LevelFilter::Off, |level| level.to_level_filter())
    }
}

impl<L: fmt::Debug> fmt::Debug for ContextLog<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextLog")
            .field("inner", &self.inner)
            .field("fields", &self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl<L: Log> Log for ContextLog<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        // Read now, on the logging thread, in its context; owned, since a variable's
        // value can only be borrowed for the length of a call.
        let mut text = String::new();
        let mut ends = Vec::with_capacity(self.fields.len());
        for field in self.fields.iter() {
            let start = text.len();
            if (field.write)(&mut text) {
                ends.push((field.name, start, text.len()));
            } else {
                text.truncate(start);
            }
        }
        if ends.is_empty() {
            return self.inner.log(record);
        }
        let added = Added {
            own: record.key_values(),
            text: &text,
            ends: &ends,
        };
        self.inner
            .log(&record.to_builder().key_values(&added).build());
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// A record's own key-values, then the variables read for it.
struct Added<'a> {
    own: &'a dyn Source,
    text: &'a str,
    ends: &'a [(&'static str, usize, usize)],
}

impl Source for Added<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        self.own.visit(visitor)?;
        for &(name, start, end) in self.ends {
            visitor.visit_pair(Key::from_str(name), Value::from(&self.text[start..end]))?;
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.own.count() + self.ends.len()
    }
}
