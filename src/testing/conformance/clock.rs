//! The clock's contract: time does not go back between two readings, and the RFC 3339 form
//! reads back as the same second.

use crate::ports::Clock;

pub fn clock(clock: &dyn Clock) {
    let a = clock.now();
    let b = clock.now();
    assert!(b >= a, "the clock went back: {a:?} then {b:?}");
    let text = clock.rfc3339();
    let parsed =
        humantime::parse_rfc3339(&text).unwrap_or_else(|e| panic!("`{text}` is not RFC 3339: {e}"));
    let now = clock.now();
    let apart = now.duration_since(parsed).unwrap_or_else(|e| e.duration());
    assert!(
        apart < std::time::Duration::from_secs(2),
        "rfc3339() says {text}, now() is {now:?}"
    );
    assert!(
        text.ends_with('Z') && !text.contains('.'),
        "whole seconds in UTC: {text}"
    );
}
