//! Field selector parsing (`FieldSelector::parse`, what `?fieldSelector=` goes through) and
//! value escaping.
//!
//! Properties: parsing never panics; a parsed selector prints to a string that parses back to
//! the same selector and prints the same again; `unescape_value(escape_value(s)) == s`;
//! matching fields built from the input never panics.
#![no_main]

use std::collections::BTreeMap;

use flotilla_core::selector::{FieldSelector, escape_value, unescape_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let escaped = escape_value(input);
    assert_eq!(unescape_value(&escaped).ok().as_deref(), Some(input), "escape of {input:?} is {escaped:?}");

    let Ok(sel) = FieldSelector::parse(input) else { return };
    let printed = sel.to_string();
    let again = FieldSelector::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, sel, "{input:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed, "printing is stable");

    let fields: BTreeMap<String, String> =
        sel.requirements().iter().map(|r| (r.field.clone(), r.value.clone())).collect();
    let _ = sel.matches(&fields);
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    let _ = sel.check_supported(&names);
    for name in &names {
        let _ = sel.requires_exact_match(name);
    }
});
