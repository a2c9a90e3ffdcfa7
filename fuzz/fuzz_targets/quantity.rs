//! Quantity parsing (`Quantity::parse`, what every `resources.requests`/`limits` value and
//! node capacity goes through), printing, serde and arithmetic.
//!
//! The input is one or two quantities separated by a space. Properties: nothing panics; a
//! parsed quantity prints to a string that parses back to the same value, and printing that
//! again is stable; the JSON string form decodes to the same value; when `a + b` fits,
//! `(a + b) - b == a`.
#![no_main]

use flotilla_core::quantity::Quantity;
use libfuzzer_sys::fuzz_target;

/// Parses, checks the print/parse round trip, and returns the quantity.
fn check(input: &str) -> Option<Quantity> {
    let q = Quantity::parse(input).ok()?;
    let printed = q.to_string();
    let again = Quantity::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, q, "{input:?} printed as {printed:?}");
    // The format may change once (a whole binary value printed as a plain integer), then not.
    let third = Quantity::parse(&again.to_string()).expect("a printed quantity parses");
    assert_eq!(third.to_string(), again.to_string(), "printing {printed:?} is stable");
    let json = serde_json::to_string(&q).expect("a quantity serializes");
    let decoded: Quantity = serde_json::from_str(&json).expect("a serialized quantity decodes");
    assert_eq!(decoded, q, "{input:?} as JSON {json}");
    let _ = (q.value(), q.milli_value(), q.is_zero(), q.is_negative());
    Some(q)
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    // A JSON document holding a quantity (string or number) must not panic either.
    let _ = serde_json::from_str::<Quantity>(input);
    let (a, b) = match input.split_once(' ') {
        Some((a, b)) => (a, b),
        None => (input, ""),
    };
    let Some(qa) = check(a) else { return };
    let Some(qb) = check(b) else { return };
    let _ = qa.cmp(&qb);
    if let Ok(sum) = qa.add(&qb) {
        if let Ok(back) = sum.sub(&qb) {
            assert_eq!(back, qa, "({a} + {b}) - {b}, sum {sum}");
        }
    }
    let _ = qa.sub(&qb);
});
