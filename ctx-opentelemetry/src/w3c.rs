//! The W3C baggage format (<https://www.w3.org/TR/baggage/>): parsing a `baggage`
//! header into entries, and writing entries back, percent-encoded.
//!
//! ```text
//! baggage-string = list-member 0*179( OWS "," OWS list-member )
//! list-member    = key OWS "=" OWS value *( OWS ";" OWS property )
//! property       = key OWS "=" OWS value / key OWS
//! key            = token
//! value          = *baggage-octet   ; percent-encoded UTF-8
//! ```
//!
//! A header is taken whole or not at all: a syntax error anywhere, or a header over the
//! limits, is a [`BaggageError`] and gives no entries, so that a truncated or forged
//! header never sets half of its values.

use std::fmt;

/// The header W3C baggage travels in.
pub(crate) const BAGGAGE: &str = "baggage";

/// The most list members a header may hold (the format's grammar allows 180).
pub const MAX_ENTRIES: usize = 180;

/// The most bytes the headers of one request may hold, all `baggage` lines together.
pub const MAX_BYTES: usize = 8192;

/// One baggage entry: its key, its value (percent-decoded) and its properties (as
/// they were on the wire, without the leading `;`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The entry's key.
    pub key: String,
    /// The decoded value.
    pub value: String,
    /// The properties, as written on the wire (`ttl=10;private`); empty when none.
    pub properties: String,
}

/// Why a `baggage` header was not accepted. None of its entries is used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaggageError {
    /// The header is longer than [`MAX_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The header holds more than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// The header does not follow the format; `at` is the byte offset of the problem.
    Malformed {
        /// Byte offset into the header.
        at: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// An entry given by the program (not parsed from a header) cannot be written as
    /// one: its key is not a token, or its properties do not follow the format.
    InvalidEntry {
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for BaggageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaggageError::TooLong { len } => {
                write!(
                    f,
                    "baggage header of {len} bytes is over the limit of {MAX_BYTES}"
                )
            }
            BaggageError::TooManyEntries => {
                write!(f, "baggage header of over {MAX_ENTRIES} entries")
            }
            BaggageError::Malformed { at, expected } => {
                write!(
                    f,
                    "malformed baggage header: expected {expected} at byte {at}"
                )
            }
            BaggageError::InvalidEntry { key, reason } => {
                write!(f, "baggage entry {key:?} cannot be sent: {reason}")
            }
        }
    }
}

impl std::error::Error for BaggageError {}

/// An RFC 7230 `tchar`.
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A `baggage-octet`: printable ASCII but for `"`, `,`, `;` and `\`.
fn is_value_octet(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// A cursor over the header's bytes.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, pred: fn(u8) -> bool) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(pred) {
            self.at += 1;
        }
        &self.text[start..self.at]
    }

    fn error(&self, expected: &'static str) -> BaggageError {
        BaggageError::Malformed {
            at: self.at,
            expected,
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), BaggageError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    fn key(&mut self) -> Result<&'a str, BaggageError> {
        match self.take_while(is_token) {
            "" => Err(self.error("a key")),
            key => Ok(key),
        }
    }

    /// One `property` (`key` or `key=value`), and the white space around it; its text,
    /// without that white space.
    fn property(&mut self) -> Result<&'a str, BaggageError> {
        self.skip_ows();
        let start = self.at;
        self.key()?;
        self.skip_ows();
        if self.peek() == Some(b'=') {
            self.at += 1;
            self.skip_ows();
            self.take_while(is_value_octet);
        }
        let property = self.text[start..self.at].trim_end_matches([' ', '\t']);
        self.skip_ows();
        Ok(property)
    }

    /// `property *( OWS ";" OWS property )`, to the end of the text.
    fn properties(&mut self) -> Result<(), BaggageError> {
        loop {
            self.property()?;
            match self.peek() {
                None => return Ok(()),
                Some(b';') => self.at += 1,
                Some(_) => return Err(self.error("`;` or the end")),
            }
        }
    }

    fn member(&mut self) -> Result<Entry, BaggageError> {
        self.skip_ows();
        let key = self.key()?;
        self.skip_ows();
        self.expect(b'=', "`=` after the key")?;
        self.skip_ows();
        let start = self.at;
        let raw = self.take_while(is_value_octet);
        let value = decode(raw).map_err(|offset| BaggageError::Malformed {
            at: start + offset,
            expected: "two hex digits after `%`",
        })?;
        self.skip_ows();
        let mut properties = String::new();
        while self.peek() == Some(b';') {
            self.at += 1;
            let property = self.property()?;
            if !properties.is_empty() {
                properties.push(';');
            }
            properties.push_str(property);
        }
        Ok(Entry {
            key: key.to_owned(),
            value,
            properties,
        })
    }
}

/// Parses the `baggage` header lines of one request (several lines are one list, joined
/// by commas).
///
/// # Errors
///
/// [`BaggageError`] when the lines together are over the limits or do not follow the
/// format; no entry is returned then.
///
/// ```
/// use ctx_opentelemetry::w3c::{parse, Entry};
///
/// let entries = parse(["userId=alice,serverNode=DF%2028", "isProduction=false;ttl=1"])?;
/// assert_eq!(entries[1].value, "DF 28");
/// assert_eq!(entries[2].properties, "ttl=1");
/// # Ok::<(), ctx_opentelemetry::w3c::BaggageError>(())
/// ```
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<Entry>, BaggageError> {
    let mut entries = Vec::new();
    let mut len = 0;
    for (i, line) in lines.into_iter().enumerate() {
        len += line.len() + usize::from(i > 0);
        if len > MAX_BYTES {
            return Err(BaggageError::TooLong { len });
        }
        let mut parser = Parser { text: line, at: 0 };
        parser.skip_ows();
        if parser.peek().is_none() {
            continue; // an empty line adds nothing
        }
        loop {
            entries.push(parser.member()?);
            if entries.len() > MAX_ENTRIES {
                return Err(BaggageError::TooManyEntries);
            }
            match parser.peek() {
                None => break,
                Some(b',') => parser.at += 1,
                Some(_) => return Err(parser.error("`,`, `;` or the end")),
            }
        }
    }
    Ok(entries)
}

/// The entries of the `baggage` header lines in `headers`, as [`parse`] reads them.
///
/// # Errors
///
/// [`BaggageError`] when the lines are malformed, over the limits, or not ASCII.
pub fn parse_headers(headers: &http::HeaderMap) -> Result<Vec<Entry>, BaggageError> {
    parse_bytes(
        headers
            .get_all(BAGGAGE)
            .iter()
            .map(http::HeaderValue::as_bytes),
    )
}

/// The entries of `baggage` header lines given as bytes, as [`parse`] reads them: for
/// header values of any HTTP library.
///
/// # Errors
///
/// [`BaggageError`] when the lines are malformed, over the limits, or not visible ASCII.
pub fn parse_bytes<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Entry>, BaggageError> {
    let lines: Result<Vec<&str>, BaggageError> = lines
        .into_iter()
        .map(|line| {
            visible_ascii(line).map_err(|at| BaggageError::Malformed {
                at,
                expected: "visible ASCII",
            })
        })
        .collect();
    parse(lines?)
}

/// `bytes` as text if it is a valid header value's text (visible ASCII, spaces and tabs,
/// as `http::HeaderValue::to_str` accepts); else the offset of the first byte that is not.
pub(crate) fn visible_ascii(bytes: &[u8]) -> Result<&str, usize> {
    match bytes
        .iter()
        .position(|&b| b != b'\t' && !(b' '..=b'~').contains(&b))
    {
        // All ASCII: valid UTF-8.
        None => Ok(std::str::from_utf8(bytes).unwrap_or_default()),
        Some(at) => Err(at),
    }
}

/// Percent-decodes `raw`; the offset of a `%` not followed by two hex digits, if any.
/// Bytes that are not UTF-8 once decoded become U+FFFD, as the format requires.
fn decode(raw: &str) -> Result<String, usize> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = |i: usize| bytes.get(i).and_then(|&b| (b as char).to_digit(16));
            let (Some(high), Some(low)) = (hex(at + 1), hex(at + 2)) else {
                return Err(at);
            };
            out.push((high * 16 + low) as u8);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Appends `value` to `out`, percent-encoding every byte that is not a
/// `baggage-octet`, and `%` itself, so that [`parse`] gives `value` back.
pub fn encode_value(value: &str, out: &mut String) {
    for &byte in value.as_bytes() {
        if is_value_octet(byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 15)] as char);
        }
    }
}

/// Whether `key` can be a baggage key (a non-empty token).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(is_token)
}

/// Whether `properties` can follow an entry's value on the wire (after its `;`): `key`
/// or `key=value` properties, separated by `;`, in visible ASCII. Empty is valid.
pub fn is_valid_properties(properties: &str) -> bool {
    properties.is_empty()
        || Parser {
            text: properties,
            at: 0,
        }
        .properties()
        .is_ok()
}

impl Entry {
    /// Whether this entry can be written on the wire as it is: its key a token, its
    /// properties following the format (its value is percent-encoded as needed).
    ///
    /// # Errors
    ///
    /// [`BaggageError::InvalidEntry`], saying which part is wrong.
    pub fn check(&self) -> Result<(), BaggageError> {
        let reason = if !is_valid_key(&self.key) {
            "its key is not a token (letters, digits and !#$%&'*+-.^_`|~)"
        } else if !is_valid_properties(&self.properties) {
            "its properties are not `key` or `key=value` in visible ASCII, separated by `;`"
        } else {
            return Ok(());
        };
        Err(BaggageError::InvalidEntry {
            key: self.key.clone(),
            reason,
        })
    }
}

/// Writes `entries` as one `baggage` header value, leaving out the entries that would
/// take it over [`MAX_ENTRIES`] or [`MAX_BYTES`], and those that cannot be written
/// ([`Entry::check`]); the header, always a valid header value, and the keys of the
/// entries left out.
pub fn encode<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> (String, Vec<&'a str>) {
    let mut header = String::new();
    let mut count = 0;
    let mut left_out = Vec::new();
    let mut member = String::new();
    for entry in entries {
        if entry.check().is_err() {
            left_out.push(entry.key.as_str());
            continue;
        }
        member.clear();
        member.push_str(&entry.key);
        member.push('=');
        encode_value(&entry.value, &mut member);
        if !entry.properties.is_empty() {
            member.push(';');
            member.push_str(&entry.properties);
        }
        let separator = usize::from(count > 0);
        if count == MAX_ENTRIES || header.len() + separator + member.len() > MAX_BYTES {
            left_out.push(entry.key.as_str());
            continue;
        }
        if separator == 1 {
            header.push(',');
        }
        header.push_str(&member);
        count += 1;
    }
    (header, left_out)
}
