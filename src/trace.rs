//! W3C trace context: the `traceparent` of a request, taken from the
//! incoming header when valid and started here otherwise, logged with every
//! line of the request and propagated to upstream calls.

use std::fmt;

/// The W3C trace context of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// 32 lowercase hex digits; empty only for work no request caused.
    pub trace_id: HexId<32>,
    /// This service's span for the request, 16 hex digits.
    pub span_id: HexId<16>,
    /// The caller's span, when the request came with a `traceparent`.
    pub parent_span_id: Option<HexId<16>>,
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the caller's trace when `traceparent` is valid, and starts
    /// a new one otherwise (an invalid header is ignored, as the spec asks).
    pub fn from_traceparent(header: Option<&str>) -> Self {
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => {
                TraceContext { trace_id, span_id: HexId::random(), parent_span_id: Some(parent), sampled }
            }
            None => TraceContext {
                trace_id: HexId::random(),
                span_id: HexId::random(),
                parent_span_id: None,
                sampled: false,
            },
        }
    }

    /// The header to send upstream: same trace, this service's span as
    /// parent.
    pub fn traceparent(&self) -> Option<String> {
        if self.trace_id.is_empty() {
            return None;
        }
        Some(format!("00-{}-{}-{}", self.trace_id, self.span_id, if self.sampled { "01" } else { "00" }))
    }
}

/// A trace or span id: `N` lowercase hex digits, or empty. Held inline, so
/// that a request's trace context costs no allocation (one is made for
/// every request). Aligned to 16, so that `as_str`'s UTF-8 check takes
/// its word-at-a-time ASCII path (unaligned, it goes byte by byte).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(align(16))]
pub struct HexId<const N: usize>([u8; N]);

impl<const N: usize> HexId<N> {
    /// `N` random digits, one from each 4 random bits (128 for a trace id,
    /// 64 for a span id, so the all-zeros id the spec reserves as invalid
    /// is practically impossible). `N` is at most 32.
    pub fn random() -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut bits: u128 = if N > 16 { rand::random() } else { rand::random::<u64>().into() };
        let mut hex = [0u8; N];
        for digit in &mut hex {
            *digit = DIGITS[(bits & 0xf) as usize];
            bits >>= 4;
        }
        HexId(hex)
    }

    /// `s` when it is `N` lowercase hex digits and not all zeros.
    fn parse(s: &str) -> Option<Self> {
        let hex: [u8; N] = s.as_bytes().try_into().ok()?;
        let valid = is_lower_hex(&hex) && hex.iter().any(|&b| b != b'0');
        valid.then_some(HexId(hex))
    }

    /// The default id is all NUL bytes, never a hex digit: "no id".
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }

    pub fn as_str(&self) -> &str {
        if self.is_empty() { "" } else { std::str::from_utf8(&self.0).unwrap_or_default() }
    }
}

impl<const N: usize> Default for HexId<N> {
    fn default() -> Self {
        HexId([0; N])
    }
}

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq<&str> for HexId<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What W3C trace context allows in its fields: lowercase hex only.
fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_traceparent(header: &str) -> Option<(HexId<32>, HexId<16>, bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, len: usize| s.len() == len && is_lower_hex(s.as_bytes());
    let valid = lower_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none())
        && lower_hex(flags, 2);
    if !valid {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((HexId::parse(trace_id)?, HexId::parse(parent)?, sampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let ctx = TraceContext::from_traceparent(Some(VALID));
        assert_eq!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.parent_span_id.map(|id| id.to_string()).as_deref(), Some("00f067aa0ba902b7"));
        assert!(ctx.sampled);
        assert_eq!(ctx.span_id.as_str().len(), 16);
        assert_ne!(ctx.span_id, "00f067aa0ba902b7");
        let outgoing = ctx.traceparent().expect("has a trace");
        assert_eq!(outgoing, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", ctx.span_id));
    }

    #[test]
    fn starts_a_new_trace_for_invalid_headers() {
        for bad in [
            "",
            "garbage",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let ctx = TraceContext::from_traceparent(Some(bad));
            assert_eq!(ctx.parent_span_id, None, "{bad:?} must not be continued");
            assert_eq!(ctx.trace_id.as_str().len(), 32);
            assert_ne!(ctx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn later_versions_may_carry_more_fields() {
        let header = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future";
        let ctx = TraceContext::from_traceparent(Some(header));
        assert_eq!(ctx.parent_span_id.map(|id| id.to_string()).as_deref(), Some("00f067aa0ba902b7"));
        assert!(!ctx.sampled);
    }

    #[test]
    fn random_ids_are_lowercase_hex() {
        let id = HexId::<16>::random();
        assert_eq!(id.as_str().len(), 16);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{id}");
        assert_ne!(id, HexId::<16>::random());
        assert!(!id.is_empty());
        assert!(HexId::<16>::default().is_empty());
        assert_eq!(HexId::<16>::default().as_str(), "");
        assert_eq!(TraceContext::default().traceparent(), None);
    }

    #[test]
    fn every_digit_of_a_trace_id_is_random() {
        let ids: Vec<HexId<32>> = (0..64).map(|_| HexId::random()).collect();
        for position in 0..32 {
            let first = ids[0].0[position];
            assert!(ids.iter().any(|id| id.0[position] != first), "digit {position} never changes");
        }
    }
}
