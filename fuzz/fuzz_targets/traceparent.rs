//! Header handling the service adds on top of hyper: the W3C `traceparent`
//! parser and the `X-Request-Id` filter. Both see any bytes a client sends
//! (hyper hands them over as a `&str` only when they are visible ASCII, but
//! the contracts below hold for every string).
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use wordcount::fuzzing::is_safe_request_id;
use wordcount::trace::TraceContext;

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fuzz_target!(|data: &[u8]| {
    let header = String::from_utf8_lossy(data);

    let ctx = TraceContext::from_traceparent(Some(&header));
    let (trace_id, span_id) = (ctx.trace_id.as_str(), ctx.span_id.as_str());
    // Whatever came in, the ids we log and propagate are well-formed.
    assert!(lower_hex(trace_id, 32), "trace id {trace_id:?}");
    assert!(trace_id.bytes().any(|b| b != b'0'), "all-zero trace id accepted from {header:?}");
    assert!(lower_hex(span_id, 16), "span id {span_id:?}");
    if let Some(parent) = ctx.parent_span_id {
        let parent = parent.as_str();
        // Continued only from a valid header, and from its own fields.
        assert!(lower_hex(parent, 16) && parent.bytes().any(|b| b != b'0'), "parent {parent:?} from {header:?}");
        let fields: Vec<&str> = header.trim().split('-').collect();
        assert!(fields.len() >= 4, "continued a trace from {header:?}");
        assert_ne!(fields[0], "ff", "version ff is invalid");
        assert_eq!(fields[1], trace_id);
        assert_eq!(fields[2], parent);
        let flags = u8::from_str_radix(fields[3], 16).expect("flags are hex");
        assert_eq!(ctx.sampled, flags & 1 == 1);
    } else {
        assert!(!ctx.sampled, "a new trace is not sampled by a caller's choice");
    }
    // What we send upstream is a valid header that continues this trace.
    let outgoing = ctx.traceparent().expect("a request always has a trace");
    assert!(HeaderValue::from_str(&outgoing).is_ok(), "{outgoing:?}");
    let next = TraceContext::from_traceparent(Some(&outgoing));
    assert_eq!(next.trace_id, ctx.trace_id);
    assert_eq!(next.parent_span_id.map(|id| id.to_string()).as_deref(), Some(span_id));
    assert_eq!(next.sampled, ctx.sampled);

    // A request id that passes is echoed in a response header and logged:
    // short, and nothing that could split a header, a log line or HTML.
    if is_safe_request_id(&header) {
        assert!((1..=64).contains(&header.len()), "{header:?}");
        assert!(
            header.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "unsafe request id accepted: {header:?}"
        );
        assert!(HeaderValue::from_str(&header).is_ok(), "{header:?}");
    }
});
