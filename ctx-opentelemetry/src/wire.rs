//! [`ContextBaggage`]: which context variables cross service boundaries, under which
//! keys, and how their values are written.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ctx_vars::{Context, ContextVar, RequestHook};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::w3c::{self, BAGGAGE, Entry};

/// The entries of the incoming baggage that no variable is marked for: kept with the
/// request's context and sent on with outgoing requests, as the format asks of every
/// service on the way.
static FORWARDED: ContextVar<Arc<[Entry]>> = ContextVar::new("ctx_opentelemetry.forwarded");

/// Writes a variable's value in a context, if it holds one.
type Encode = dyn Fn(&Context) -> Option<String> + Send + Sync;
/// Sets a variable, in the current context, from its wire form.
type Decode = dyn Fn(&str) -> Result<(), String> + Send + Sync;
/// A context without the variable.
type Remove = dyn Fn(Context) -> Context + Send + Sync;

#[derive(Clone)]
struct Marked {
    /// The baggage key, or the header name.
    key: &'static str,
    encode: Arc<Encode>,
    decode: Arc<Decode>,
    remove: Arc<Remove>,
}

impl Marked {
    fn new<T, E>(
        key: &'static str,
        var: &'static ContextVar<T>,
        encode: impl Fn(&T) -> String + Send + Sync + 'static,
        decode: impl Fn(&str) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self
    where
        T: Send + Sync + 'static,
        E: fmt::Display,
    {
        Marked {
            key,
            encode: Arc::new(move |context| context.get(var).map(&encode)),
            decode: Arc::new(move |text| {
                let value = decode(text).map_err(|error| error.to_string())?;
                // The value stays for the rest of the request's context: the token
                // is not needed.
                drop(var.set(value));
                Ok(())
            }),
            remove: Arc::new(move |context| context.without(var)),
        }
    }

    /// Sets the variable from `text`, or says why not.
    fn set(&self, text: &str, source: &str) -> bool {
        match (self.decode)(text) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(
                    target: "ctx_opentelemetry",
                    key = self.key,
                    source,
                    %error,
                    "incoming value not set: it does not parse"
                );
                false
            }
        }
    }
}

#[derive(Clone, Default)]
struct Vars {
    baggage: Vec<Marked>,
    headers: Vec<(HeaderName, Marked)>,
}

/// Which context variables travel with requests between services: as W3C `baggage`
/// entries, or in headers of their own (such as `x-request-id`).
///
/// One value serves every direction: [`extract`](ContextBaggage::extract) sets the
/// variables from an incoming request's headers (it is also a
/// [`ContextLayer`](ctx_vars::ContextLayer) hook), [`inject`](ContextBaggage::inject)
/// writes them into an outgoing request's headers (or use
/// [`layer`](ContextBaggage::layer) on a client), and
/// [`propagator`](ContextBaggage::propagator) is an OpenTelemetry
/// [`TextMapPropagator`](opentelemetry::propagation::TextMapPropagator) for code that
/// already injects and extracts through OpenTelemetry.
///
/// Values go on the wire with their `Display` and come back with their `FromStr`
/// ([`var`](ContextBaggage::var)), or with functions of your own
/// ([`var_with`](ContextBaggage::var_with)). Only values set in the context travel, not
/// defaults.
///
/// ```
/// use ctx_vars::context_var;
/// use ctx_opentelemetry::ContextBaggage;
///
/// #[context_var]
/// static TENANT: String;
/// #[context_var]
/// static REQUEST_ID: u64;
///
/// let baggage = ContextBaggage::new()
///     .var("tenant", &TENANT)
///     .header("x-request-id", &REQUEST_ID);
///
/// # ctx_vars::Context::new().run(|| {
/// TENANT.set("acme corp".into());
/// REQUEST_ID.set(7);
/// let mut headers = http::HeaderMap::new();
/// baggage.inject(&mut headers);
/// assert_eq!(headers["baggage"], "tenant=acme%20corp");
/// assert_eq!(headers["x-request-id"], "7");
/// # });
/// ```
#[derive(Clone, Default)]
pub struct ContextBaggage {
    vars: Arc<Vars>,
}

impl ContextBaggage {
    /// No variables yet.
    pub fn new() -> Self {
        ContextBaggage::default()
    }

    fn push(mut self, push: impl FnOnce(&mut Vars)) -> Self {
        push(Arc::make_mut(&mut self.vars));
        self
    }

    /// Sends `var` as the baggage entry `key`, written with `Display` and read back with
    /// `FromStr`.
    ///
    /// # Panics
    ///
    /// If `key` is not a baggage key (letters, digits and ``!#$%&'*+-.^_`|~``).
    #[must_use]
    pub fn var<T>(self, key: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + FromStr + Send + Sync + 'static,
        T::Err: fmt::Display,
    {
        self.var_with(key, var, T::to_string, T::from_str)
    }

    /// Sends `var` as the baggage entry `key`, written by `encode` and read back by
    /// `decode`.
    ///
    /// # Panics
    ///
    /// If `key` is not a baggage key (letters, digits and ``!#$%&'*+-.^_`|~``).
    #[must_use]
    pub fn var_with<T, E>(
        self,
        key: &'static str,
        var: &'static ContextVar<T>,
        encode: impl Fn(&T) -> String + Send + Sync + 'static,
        decode: impl Fn(&str) -> Result<T, E> + Send + Sync + 'static,
    ) -> Self
    where
        T: Send + Sync + 'static,
        E: fmt::Display,
    {
        assert!(
            w3c::is_valid_key(key),
            "{key:?} is not a baggage key: use letters, digits and !#$%&'*+-.^_`|~"
        );
        let marked = Marked::new(key, var, encode, decode);
        self.push(|vars| vars.baggage.push(marked))
    }

    /// Sends `var` in a header of its own, `name` (such as `x-request-id`), written with
    /// `Display` and read back with `FromStr`. An incoming header wins over a baggage
    /// entry for the same variable.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name.
    #[must_use]
    pub fn header<T>(self, name: &'static str, var: &'static ContextVar<T>) -> Self
    where
        T: fmt::Display + FromStr + Send + Sync + 'static,
        T::Err: fmt::Display,
    {
        let header = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|_| panic!("{name:?} is not a valid header name"));
        let marked = Marked::new(name, var, T::to_string, T::from_str);
        self.push(|vars| vars.headers.push((header, marked)))
    }

    /// The baggage entries of the variables set in the current context, and the
    /// entries received with the request that no variable is marked for.
    pub fn current_entries(&self) -> Vec<Entry> {
        let context = Context::current();
        let mut entries: Vec<Entry> = self
            .vars
            .baggage
            .iter()
            .filter_map(|marked| {
                Some(Entry {
                    key: marked.key.to_owned(),
                    value: (marked.encode)(&context)?,
                    properties: String::new(),
                })
            })
            .collect();
        if let Some(forwarded) = context.get(&FORWARDED) {
            entries.extend(forwarded.iter().cloned());
        }
        entries
    }

    /// Sets the marked variables from `entries`, in the current context, and keeps the
    /// others to be forwarded; how many variables it set. An entry whose value does not
    /// parse is skipped, and so is one that could not be sent on ([`Entry::check`]: a
    /// key that is not a token, malformed properties), each with a warning that says why.
    pub fn set_from(&self, entries: &[Entry]) -> usize {
        let mut set = 0;
        let mut forwarded = Vec::new();
        for entry in entries {
            if let Err(error) = entry.check() {
                tracing::warn!(target: "ctx_opentelemetry", %error, "baggage entry skipped");
                continue;
            }
            match self.vars.baggage.iter().find(|m| m.key == entry.key) {
                Some(marked) => set += usize::from(marked.set(&entry.value, BAGGAGE)),
                None => forwarded.push(entry.clone()),
            }
        }
        if !forwarded.is_empty() {
            drop(FORWARDED.set(forwarded.into()));
        }
        set
    }

    /// The context to handle a message in, from the OpenTelemetry context a propagator
    /// extracted from it (see [`BaggagePropagator`](crate::BaggagePropagator)): a copy of
    /// the current context in which the marked variables, and the entries to forward,
    /// are exactly those of `otel`'s baggage. Nothing of an earlier message's is left in
    /// it, and the current context is not changed.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use ctx_vars::context_var;
    /// use ctx_opentelemetry::ContextBaggage;
    /// use opentelemetry::propagation::TextMapPropagator;
    ///
    /// #[context_var]
    /// static TENANT: String;
    ///
    /// let baggage = ContextBaggage::new().var("tenant", &TENANT);
    /// let propagator = baggage.propagator();
    /// let messages = [("baggage", "tenant=acme"), ("baggage", "other=1")];
    /// # ctx_vars::Context::new().run(|| {
    /// let mut seen = Vec::new();
    /// for (name, value) in messages {
    ///     let carrier = HashMap::from([(name.to_owned(), value.to_owned())]);
    ///     let otel = propagator.extract(&carrier);
    ///     seen.push(baggage.context_from(&otel).run(|| TENANT.get()));
    /// }
    /// assert_eq!(seen, [Some("acme".to_owned()), None]);
    /// # });
    /// ```
    pub fn context_from(&self, otel: &opentelemetry::Context) -> Context {
        use opentelemetry::baggage::BaggageExt;
        let entries: Vec<Entry> = otel
            .baggage()
            .iter()
            .map(|(key, (value, metadata))| Entry {
                key: key.to_string(),
                value: value.to_string(),
                properties: metadata.as_str().to_owned(),
            })
            .collect();
        let mut context = self
            .vars
            .baggage
            .iter()
            .fold(Context::current().without(&FORWARDED), |context, marked| {
                (marked.remove)(context)
            });
        context.run(|| self.set_from(&entries));
        context
    }

    /// Sets the marked variables, in the current context, from an incoming request's
    /// `baggage` header and the variables' own headers; how many it set.
    ///
    /// Nothing is set from a `baggage` header that is malformed or over the limits
    /// ([`w3c::MAX_BYTES`], [`w3c::MAX_ENTRIES`]); a value that does not parse is
    /// skipped. Either way a warning is logged, and the request goes on.
    pub fn extract(&self, headers: &HeaderMap) -> usize {
        self.extract_from(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes))
    }

    /// As [`extract`](Self::extract), for a request whose headers are not an `http` 1
    /// `HeaderMap` (actix-web's, another version's): `header(name)` gives the values of
    /// the header `name` (lowercase), as bytes.
    ///
    /// ```
    /// use ctx_opentelemetry::ContextBaggage;
    /// use ctx_vars::{Context, context_var};
    ///
    /// #[context_var]
    /// static TENANT: String;
    ///
    /// let baggage = ContextBaggage::new().var("tenant", &TENANT);
    /// let headers = [("baggage", &b"tenant=acme"[..])];
    /// Context::new().run(|| {
    ///     baggage.extract_from(|name| {
    ///         let values = headers.iter().filter(|(n, _)| *n == name);
    ///         values.map(|(_, v)| *v).collect::<Vec<_>>()
    ///     });
    ///     assert_eq!(TENANT.get().as_deref(), Some("acme"));
    /// });
    /// ```
    pub fn extract_from<'a, I>(&self, header: impl Fn(&str) -> I) -> usize
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut set = match w3c::parse_bytes(header(BAGGAGE)) {
            Ok(entries) => self.set_from(&entries),
            Err(error) => {
                tracing::warn!(target: "ctx_opentelemetry", %error, "baggage header ignored");
                0
            }
        };
        for (name, marked) in &self.vars.headers {
            let Some(value) = header(name.as_str()).into_iter().next() else {
                continue;
            };
            match w3c::visible_ascii(value) {
                Ok(text) => set += usize::from(marked.set(text, name.as_str())),
                Err(_) => tracing::warn!(
                    target: "ctx_opentelemetry",
                    header = name.as_str(),
                    "header ignored: it is not visible ASCII"
                ),
            }
        }
        set
    }

    /// Writes the variables set in the current context into an outgoing request's
    /// headers: marked variables and forwarded entries into `baggage` (after the entries
    /// already there whose keys are not ours), header variables into their headers.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let entries = match w3c::parse_headers(headers) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(
                    target: "ctx_opentelemetry",
                    %error,
                    "outgoing baggage header replaced"
                );
                Vec::new()
            }
        };
        if let Some(header) = self.encode_with(entries) {
            // Encoded headers are visible ASCII: the warning is for a bug in the encoder.
            match HeaderValue::try_from(header) {
                Ok(header) => drop(headers.insert(HeaderName::from_static(BAGGAGE), header)),
                Err(_) => tracing::warn!(
                    target: "ctx_opentelemetry",
                    "baggage not sent: the encoded header is not a valid header value"
                ),
            }
        }
        let context = Context::current();
        for (name, marked) in &self.vars.headers {
            if let Some(value) = (marked.encode)(&context) {
                match HeaderValue::from_str(&value) {
                    Ok(value) => {
                        headers.insert(name.clone(), value);
                    }
                    Err(_) => tracing::warn!(
                        target: "ctx_opentelemetry",
                        header = name.as_str(),
                        "value not sent: it is not a valid header value"
                    ),
                }
            }
        }
    }

    /// The `baggage` header for an outgoing request: `theirs` (entries already bound for
    /// it) whose keys are not ours, then [`current_entries`](Self::current_entries);
    /// `None` when there is no entry. Warns about entries left out over the limits.
    pub(crate) fn encode_with(&self, mut theirs: Vec<Entry>) -> Option<String> {
        let ours = self.current_entries();
        theirs.retain(|entry| !ours.iter().any(|our| our.key == entry.key));
        theirs.extend(ours);
        let (header, left_out) = w3c::encode(&theirs);
        if !left_out.is_empty() {
            tracing::warn!(
                target: "ctx_opentelemetry",
                ?left_out,
                "baggage entries not sent: over the limits of the format"
            );
        }
        (!header.is_empty()).then_some(header)
    }
}

impl<B> RequestHook<http::Request<B>> for ContextBaggage {
    fn on_request(&self, request: &http::Request<B>) {
        self.extract(request.headers());
    }
}

impl fmt::Debug for ContextBaggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |marked: &[Marked]| marked.iter().map(|m| m.key).collect::<Vec<_>>();
        let headers: Vec<_> = self.vars.headers.iter().map(|(_, m)| m.key).collect();
        f.debug_struct("ContextBaggage")
            .field("baggage", &keys(&self.vars.baggage))
            .field("headers", &headers)
            .finish()
    }
}
