//! [`BaggagePropagator`]: ctx's variables through OpenTelemetry's propagation API.

use opentelemetry::Context as OtelContext;
use opentelemetry::baggage::{BaggageExt, KeyValueMetadata};
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

use crate::ContextBaggage;
use crate::w3c::{self, BAGGAGE, Entry};

/// An OpenTelemetry [`TextMapPropagator`] for the W3C `baggage` header that carries
/// ctx's marked variables, made by [`ContextBaggage::propagator`].
///
/// Use it in place of OpenTelemetry's own baggage propagator, alone or beside the trace
/// context propagator in a
/// [`TextMapCompositePropagator`](opentelemetry::propagation::TextMapCompositePropagator),
/// so that every place that already injects or extracts through OpenTelemetry
/// (reqwest-tracing, tonic interceptors, a global propagator) carries ctx's values too:
///
/// - **inject** writes one `baggage` header: the OpenTelemetry context's own baggage,
///   then the variables set in the current ctx context (which win on a shared key), and
///   the entries received with the request that no variable is marked for.
/// - **extract** is pure, as OpenTelemetry's own: it returns the OpenTelemetry context
///   with every entry of the header as its baggage, and changes nothing else. Run the
///   code that handles the request or message in
///   [`ContextBaggage::context_from`] that context: the marked variables are set there,
///   from this header alone, so a consumer handling one message after another never
///   sees an earlier message's values. A malformed or oversized header returns the
///   context unchanged, with a warning.
///
/// Entries of the OpenTelemetry baggage whose metadata could not be sent as baggage
/// properties (line breaks, characters that are not ASCII) are sent without it, with a
/// warning: every header it writes is a valid header value.
#[derive(Clone, Debug)]
pub struct BaggagePropagator {
    baggage: ContextBaggage,
    fields: [String; 1],
}

impl ContextBaggage {
    /// This set of variables as an OpenTelemetry propagator.
    pub fn propagator(&self) -> BaggagePropagator {
        BaggagePropagator {
            baggage: self.clone(),
            fields: [BAGGAGE.to_owned()],
        }
    }
}

impl TextMapPropagator for BaggagePropagator {
    fn inject_context(&self, cx: &OtelContext, injector: &mut dyn Injector) {
        let theirs = cx
            .baggage()
            .iter()
            .filter(|(key, _)| w3c::is_valid_key(key.as_str()))
            .map(|(key, (value, metadata))| {
                let mut properties = metadata.as_str().to_owned();
                if !w3c::is_valid_properties(&properties) {
                    tracing::warn!(
                        target: "ctx_opentelemetry",
                        key = key.as_str(),
                        "baggage metadata not sent: it is not valid baggage properties"
                    );
                    properties.clear();
                }
                Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                    properties,
                }
            })
            .collect();
        if let Some(header) = self.baggage.encode_with(theirs) {
            injector.set(BAGGAGE, header);
        }
    }

    fn extract_with_context(&self, cx: &OtelContext, extractor: &dyn Extractor) -> OtelContext {
        let lines = extractor.get_all(BAGGAGE).unwrap_or_default();
        match w3c::parse(lines) {
            Ok(entries) if entries.is_empty() => cx.clone(),
            Ok(entries) => cx.with_baggage(
                entries
                    .into_iter()
                    .map(|entry| KeyValueMetadata::new(entry.key, entry.value, entry.properties)),
            ),
            Err(error) => {
                tracing::warn!(target: "ctx_opentelemetry", %error, "baggage header ignored");
                cx.clone()
            }
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}
