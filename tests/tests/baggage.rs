//! ctx-opentelemetry's W3C baggage: the format against the specification's examples, bad
//! input, the round trip, the OpenTelemetry propagator beside the trace context one, and
//! forwarding of entries no variable is marked for.

use std::collections::HashMap;

use ctx_opentelemetry::ContextBaggage;
use ctx_opentelemetry::w3c::{self, BaggageError, Entry};
use ctx_tests::{Capture, fresh};
use ctx_vars::{Context, context_var};
use http::HeaderMap;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::{TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use proptest::prelude::*;

#[context_var]
static TENANT: String;

#[context_var]
static USER_ID: u64;

#[context_var]
static REQUEST_ID: u64;

fn baggage() -> ContextBaggage {
    ContextBaggage::new()
        .var("tenant", &TENANT)
        .var("userId", &USER_ID)
        .header("x-request-id", &REQUEST_ID)
}

fn entry(key: &str, value: &str, properties: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        properties: properties.into(),
    }
}

fn headers(lines: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append("baggage", line.parse().expect("a header value"));
    }
    headers
}

/// Runs `f` with a subscriber that captures warnings; the lines it logged.
fn warnings(f: impl FnOnce()) -> Vec<String> {
    let out = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .without_time()
        .with_ansi(false)
        .with_writer(out.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    out.lines()
}

// The W3C Baggage specification, "Header Content", Example:
//
// > The following example header contains 3 `list-member`s.
// > baggage: key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue
#[test]
fn the_specifications_example_with_properties() {
    let entries = w3c::parse([
        "key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
    ]);
    assert_eq!(
        entries.unwrap(),
        [
            entry("key1", "value1", "property1;property2"),
            entry("key2", "value2", ""),
            entry("key3", "value3", "propertyKey=propertyValue"),
        ]
    );
}

// "Examples of HTTP headers": assume we want to propagate these entries:
// `userId="alice"`, `serverNode="DF 28"`, `isProduction=false`.
#[test]
fn the_specifications_header_examples_give_the_same_entries() {
    let expected = [
        entry("userId", "alice", ""),
        entry("serverNode", "DF 28", ""),
        entry("isProduction", "false", ""),
    ];
    // > Single header:
    // > baggage: userId=alice,serverNode=DF%2028,isProduction=false
    let single = ["userId=alice,serverNode=DF%2028,isProduction=false"];
    // > Context might be split into multiple headers:
    // > baggage: userId=alice
    // > baggage: serverNode=DF%2028,isProduction=false
    let split = ["userId=alice", "serverNode=DF%2028,isProduction=false"];
    // > Values and names might begin and end with spaces:
    // > baggage: userId =   alice
    // > baggage: serverNode = DF%2028, isProduction = false
    let spaced = [
        "userId =   alice",
        "serverNode = DF%2028, isProduction = false",
    ];
    for lines in [&single[..], &split, &spaced] {
        assert_eq!(
            w3c::parse(lines.iter().copied()).unwrap(),
            expected,
            "{lines:?}"
        );
        // Through real headers, several lines included.
        assert_eq!(w3c::parse_headers(&headers(lines)).unwrap(), expected);
    }
}

// "value": "A value contains a URL encoded UTF-8 string", and "`value` MAY contain any
// number of the equal sign (`=`) characters".
#[test]
fn values_are_percent_decoded_utf8_and_may_hold_equal_signs() {
    let entries = w3c::parse(["name=Am%C3%A9lie, token=a=b==, bad=%FF%FE"]).unwrap();
    assert_eq!(entries[0].value, "Amélie");
    assert_eq!(entries[1].value, "a=b==");
    // Octets that are not UTF-8 become U+FFFD, as the format requires.
    assert_eq!(entries[2].value, "\u{FFFD}\u{FFFD}");
}

#[test]
fn malformed_headers_are_typed_errors() {
    let malformed = [
        ("noequals", "`=` after the key"),
        ("=value", "a key"),
        ("k=v,", "a key"),
        ("k=v,,k2=v2", "a key"),
        ("k=\"quoted\"", "`,`, `;` or the end"),
        ("k=a b", "`,`, `;` or the end"),
        ("k=v;", "a key"),
        ("ke y=v", "`=` after the key"),
        ("k=%G1", "two hex digits after `%`"),
        ("k=abc%2", "two hex digits after `%`"),
    ];
    for (header, expected) in malformed {
        match w3c::parse([header]) {
            Err(BaggageError::Malformed { expected: got, .. }) => {
                assert_eq!(got, expected, "{header:?}");
            }
            other => panic!("{header:?} gave {other:?}"),
        }
    }
}

#[test]
fn headers_over_the_limits_are_refused_whole() {
    let many: Vec<String> = (0..=w3c::MAX_ENTRIES).map(|i| format!("k{i}=v")).collect();
    assert_eq!(
        w3c::parse([&*many.join(",")]),
        Err(BaggageError::TooManyEntries)
    );
    assert_eq!(
        w3c::parse([&*many[..w3c::MAX_ENTRIES].join(",")])
            .unwrap()
            .len(),
        180
    );

    let long = format!("k={}", "v".repeat(w3c::MAX_BYTES - 1));
    assert!(matches!(
        w3c::parse([&*long]),
        Err(BaggageError::TooLong { .. })
    ));
    // Split over several lines, the total counts.
    let half = format!("k={}", "v".repeat(w3c::MAX_BYTES / 2));
    assert!(matches!(
        w3c::parse([&*half, &*half]),
        Err(BaggageError::TooLong { .. })
    ));
    assert!(w3c::parse([&*format!("k={}", "v".repeat(w3c::MAX_BYTES - 2))]).is_ok());
}

#[test]
fn nothing_from_a_bad_header_is_set_and_the_reason_is_logged() {
    fresh(|| {
        let bad = [
            headers(&["tenant=acme,userId=7,broken"]),
            headers(&[&format!("tenant=acme,{}", "k=v,".repeat(200) + "k=v")]),
            headers(&[&format!("tenant=acme,k={}", "v".repeat(9000))]),
        ];
        for headers in &bad {
            let logged = warnings(|| {
                Context::new().run(|| {
                    assert_eq!(baggage().extract(headers), 0);
                    assert_eq!((TENANT.get(), USER_ID.get()), (None, None));
                });
            });
            assert!(
                logged
                    .iter()
                    .any(|l| l.contains("WARN") && l.contains("baggage header ignored")),
                "{logged:?}"
            );
        }
        // Raw non-ASCII bytes are not a header a propagator accepts either.
        let mut headers = HeaderMap::new();
        headers.insert(
            "baggage",
            http::HeaderValue::from_bytes("tenant=acmé".as_bytes()).unwrap(),
        );
        Context::new().run(|| {
            assert_eq!(baggage().extract(&headers), 0);
            assert_eq!(TENANT.get(), None);
        });
    });
}

#[test]
fn a_value_that_does_not_parse_is_skipped_and_the_rest_is_set() {
    fresh(|| {
        let mut headers = headers(&["tenant=acme,userId=seven"]);
        headers.insert("x-request-id", "not-a-number".parse().unwrap());
        let logged = warnings(|| {
            Context::new().run(|| {
                assert_eq!(baggage().extract(&headers), 1);
                assert_eq!(TENANT.get().as_deref(), Some("acme"));
                assert_eq!((USER_ID.get(), REQUEST_ID.get()), (None, None));
            });
        });
        assert_eq!(
            logged
                .iter()
                .filter(|l| l.contains("does not parse"))
                .count(),
            2,
            "{logged:?}"
        );
        assert!(
            logged.iter().any(|l| l.contains("key=\"userId\"")),
            "{logged:?}"
        );
        assert!(
            logged.iter().any(|l| l.contains("key=\"x-request-id\"")),
            "{logged:?}"
        );
    });
}

/// The values of the header `name` among `lines`, in order: what a header map that
/// is not `http`'s hands `extract_from`.
fn values<'a>(lines: &[(&str, &'a [u8])], name: &str) -> Vec<&'a [u8]> {
    let named = lines.iter().filter(|(n, _)| *n == name);
    named.map(|(_, value)| *value).collect()
}

#[test]
fn headers_as_bytes_from_another_http_library_are_read_as_extract_reads_them() {
    fresh(|| {
        let lines: [(&str, &[u8]); 4] = [
            ("baggage", b"tenant=acme"),
            ("baggage", b"userId=7,other=x"),
            ("x-request-id", b"42"),
            ("x-request-id", b"43"),
        ];
        let header = |name: &str| values(&lines, name);
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(name, http::HeaderValue::from_bytes(value).unwrap());
        }
        let from_bytes = Context::new().run(|| {
            assert_eq!(baggage().extract_from(header), 3);
            (TENANT.get(), USER_ID.get(), REQUEST_ID.get())
        });
        let from_map = Context::new().run(|| {
            assert_eq!(baggage().extract(&map), 3);
            (TENANT.get(), USER_ID.get(), REQUEST_ID.get())
        });
        assert_eq!(from_bytes, (Some("acme".into()), Some(7), Some(42)));
        assert_eq!(from_bytes, from_map);
        // Bytes that no header value may hold: nothing set from them, each logged.
        let bad: [(&str, &[u8]); 2] = [
            ("baggage", b"tenant=acm\xc3\xa9"),
            ("x-request-id", b"4\x002"),
        ];
        let logged = warnings(|| {
            Context::new().run(|| {
                assert_eq!(baggage().extract_from(|name| values(&bad, name)), 0);
                assert_eq!((TENANT.get(), REQUEST_ID.get()), (None, None));
            });
        });
        assert!(
            logged.iter().any(|l| l.contains("baggage header ignored")),
            "{logged:?}"
        );
        assert!(
            logged.iter().any(|l| l.contains("not visible ASCII")),
            "{logged:?}"
        );
    });
}

#[test]
fn the_request_id_header_wins_over_a_baggage_entry() {
    fresh(|| {
        let baggage = ContextBaggage::new()
            .var("rid", &REQUEST_ID)
            .header("x-request-id", &REQUEST_ID);
        let mut headers = headers(&["rid=1"]);
        headers.insert("x-request-id", "2".parse().unwrap());
        Context::new().run(|| {
            baggage.extract(&headers);
            assert_eq!(REQUEST_ID.get(), Some(2));
        });
    });
}

#[test]
fn inject_writes_set_values_and_keeps_foreign_entries() {
    fresh(|| {
        let baggage = baggage();
        let mut out = headers(&["other=1,tenant=stale"]);
        Context::new().run(|| {
            // Nothing set: nothing but what was there.
            let mut empty = HeaderMap::new();
            baggage.inject(&mut empty);
            assert!(empty.is_empty());

            TENANT.set("acme, inc; \"quoted\" 100%".into());
            REQUEST_ID.set(42);
            baggage.inject(&mut out);
        });
        assert_eq!(
            out["baggage"],
            "other=1,tenant=acme%2C%20inc%3B%20%22quoted%22%20100%25"
        );
        assert_eq!(out["x-request-id"], "42");
        assert_eq!(out.get_all("baggage").iter().count(), 1);
    });
}

#[test]
fn unmarked_entries_received_are_forwarded_with_their_properties() {
    fresh(|| {
        let incoming = headers(&["tenant=acme,feature.flag=on;ttl=60,userId=3"]);
        let mut outgoing = HeaderMap::new();
        Context::new().run(|| {
            baggage().extract(&incoming);
            // Forwarded from a spawned thread too: the entries are inherited.
            let task = ctx_vars::thread::spawn(move || {
                TENANT.set("acme-eu".into());
                baggage().inject(&mut outgoing);
                outgoing
            });
            let outgoing = task.join().unwrap();
            assert_eq!(
                outgoing["baggage"],
                "tenant=acme-eu,userId=3,feature.flag=on;ttl=60"
            );
        });
    });
}

#[test]
fn the_propagator_composes_with_trace_context() {
    fresh(|| {
        let propagator = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(baggage().propagator()),
        ]);
        let fields: Vec<&str> = propagator.fields().collect();
        assert!(
            fields.contains(&"traceparent") && fields.contains(&"baggage"),
            "{fields:?}"
        );

        // Inject: the OpenTelemetry context's span and baggage, and ctx's values.
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let otel = opentelemetry::Context::new()
            .with_remote_span_context(span)
            .with_baggage([opentelemetry::KeyValue::new("region", "eu")]);
        let mut carrier = HashMap::new();
        Context::new().run(|| {
            TENANT.set("acme".into());
            USER_ID.set(7);
            propagator.inject_context(&otel, &mut carrier);
        });
        assert_eq!(
            carrier["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(carrier["baggage"], "region=eu,tenant=acme,userId=7");

        // Extract: pure, every entry in the returned OpenTelemetry context, the span
        // context too; ctx's variables set in the context made from it.
        Context::new().run(|| {
            let extracted = propagator.extract(&carrier);
            assert_eq!(TENANT.get(), None, "extract changes no ctx context");
            baggage().context_from(&extracted).run(|| {
                assert_eq!(TENANT.get().as_deref(), Some("acme"));
                assert_eq!(USER_ID.get(), Some(7));
            });
            assert_eq!(
                extracted.baggage().get("region").map(|v| v.to_string()),
                Some("eu".to_owned())
            );
            assert_eq!(
                extracted.baggage().get("tenant").map(|v| v.to_string()),
                Some("acme".to_owned())
            );
            assert!(extracted.span().span_context().is_remote());
        });

        // A bad header: nothing set, the context unchanged.
        let mut bad = HashMap::new();
        bad.insert("baggage".to_owned(), "tenant=acme,=".to_owned());
        Context::new().run(|| {
            let extracted = propagator.extract(&bad);
            assert_eq!(extracted.baggage().len(), 0);
            assert_eq!(
                baggage().context_from(&extracted).run(|| TENANT.get()),
                None
            );
        });
    });
}

/// A consumer handling messages one after another in one context: each message's
/// values are its own, whatever came before, and a malformed one has none.
#[test]
fn extracting_message_after_message_never_mixes_their_values() {
    fresh(|| {
        let baggage = baggage();
        let propagator = baggage.propagator();
        let messages = [
            "tenant=first,extra=1",
            "userId=2",
            "tenant=third,=malformed",
        ];
        let mut seen = Vec::new();
        for message in messages {
            let carrier = HashMap::from([("baggage".to_owned(), message.to_owned())]);
            let otel = propagator.extract(&carrier);
            seen.push(baggage.context_from(&otel).run(|| {
                let mut outgoing = HeaderMap::new();
                baggage.inject(&mut outgoing);
                let forwarded = outgoing
                    .get("baggage")
                    .map(|v| v.to_str().unwrap().to_owned());
                (TENANT.get(), USER_ID.get(), forwarded)
            }));
        }
        assert_eq!(
            seen,
            [
                (
                    Some("first".into()),
                    None,
                    Some("tenant=first,extra=1".into())
                ),
                (None, Some(2), Some("userId=2".into())),
                (None, None, None),
            ]
        );
        assert_eq!((TENANT.get(), USER_ID.get()), (None, None));
    });
}

/// OpenTelemetry baggage metadata that is not valid baggage properties never reaches
/// the carrier: every value the propagator writes is a valid header value.
#[test]
fn the_propagator_writes_only_valid_header_values() {
    use opentelemetry::baggage::{BaggageMetadata, KeyValueMetadata};
    fresh(|| {
        let otel = opentelemetry::Context::new().with_baggage([
            KeyValueMetadata::new("a", "1", BaggageMetadata::from("ttl=1\r\nx-evil: 1")),
            KeyValueMetadata::new("b", "2", BaggageMetadata::from("région=é")),
            KeyValueMetadata::new("c", "3", BaggageMetadata::from("ttl=60;private")),
        ]);
        let mut carrier = HashMap::new();
        let logged = warnings(|| baggage().propagator().inject_context(&otel, &mut carrier));
        let header = &carrier["baggage"];
        assert!(http::HeaderValue::from_str(header).is_ok(), "{header:?}");
        // OpenTelemetry's baggage has no order.
        let mut members: Vec<&str> = header.split(',').collect();
        members.sort_unstable();
        assert_eq!(members, ["a=1", "b=2", "c=3;ttl=60;private"]);
        assert_eq!(logged.len(), 2, "{logged:?}");
    });
}

/// Entries handed to `set_from` by hand that could not be sent on are skipped where
/// they are given, with the reason, and the others (ours included) still go out.
#[test]
fn entries_that_cannot_be_sent_are_refused_by_set_from() {
    fresh(|| {
        let baggage = baggage();
        let logged = warnings(|| {
            let set = baggage.set_from(&[
                entry("user id", "x", ""),
                entry("bad", "x", "ttl=1\r\nx-evil: 1"),
                entry("tenant", "acme", ""),
                entry("keep", "on", "ttl=1"),
            ]);
            assert_eq!(set, 1);
        });
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(logged[0].contains("key is not a token"), "{logged:?}");
        assert!(logged[1].contains("properties"), "{logged:?}");
        let mut outgoing = HeaderMap::new();
        baggage.inject(&mut outgoing);
        assert_eq!(outgoing["baggage"], "tenant=acme,keep=on;ttl=1");
        // And `encode` skips such entries rather than panicking.
        let (bad, ok) = (entry("user id", "x", ""), entry("ok", "1", ""));
        let (header, left_out) = w3c::encode([&bad, &ok]);
        assert_eq!((header.as_str(), left_out), ("ok=1", vec!["user id"]));
    });
}

#[test]
#[should_panic(expected = "is not a baggage key")]
fn a_key_that_is_not_a_token_is_refused_when_declared() {
    let _ = ContextBaggage::new().var("user id", &USER_ID);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encode, then decode, gives every marked value back, whatever its characters.
    #[test]
    fn marked_values_survive_the_round_trip(tenant in any::<String>(), user in any::<u64>()) {
        let mut headers = HeaderMap::new();
        Context::new().run(|| {
            TENANT.set(tenant.clone());
            USER_ID.set(user);
            baggage().inject(&mut headers);
        });
        Context::new().run(|| {
            prop_assert_eq!(baggage().extract(&headers), 2);
            prop_assert_eq!(TENANT.get(), Some(tenant.clone()));
            prop_assert_eq!(USER_ID.get(), Some(user));
            Ok(())
        })?;
    }

    /// The format's own round trip: entries with any token key and any value.
    #[test]
    fn entries_survive_encode_and_parse(
        entries in proptest::collection::vec(("[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}", any::<String>()), 0..20)
    ) {
        let entries: Vec<Entry> = entries.into_iter().map(|(k, v)| entry(&k, &v, "")).collect();
        let (header, left_out) = w3c::encode(&entries);
        prop_assume!(left_out.is_empty());
        let parsed = if header.is_empty() { Vec::new() } else { w3c::parse([&*header]).unwrap() };
        prop_assert_eq!(parsed, entries);
    }
}
