//! Label selector parsing (`LabelSelector::parse`, what `?labelSelector=` goes through).
//!
//! Properties: parsing never panics; a parsed selector prints to a string that parses back to
//! the same selector and prints the same again; converting it to the API form and back gives
//! the same selector; matching a label set built from the input never panics.
#![no_main]

use std::collections::BTreeMap;

use flotilla_core::selector::LabelSelector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Ok(sel) = LabelSelector::parse(input) else { return };
    let printed = sel.to_string();
    let again = LabelSelector::parse(&printed)
        .unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}, which does not parse: {e}"));
    assert_eq!(again, sel, "{input:?} printed as {printed:?}");
    assert_eq!(again.to_string(), printed, "printing is stable");

    // Labels named by the selector itself, with the values it mentions.
    let labels: BTreeMap<String, String> = sel
        .requirements()
        .iter()
        .map(|r| (r.key().to_string(), r.values().first().cloned().unwrap_or_default()))
        .collect();
    let matched = sel.matches(&labels);

    // The API form (matchLabels / matchExpressions) selects the same label sets.
    if let Ok(Some(api)) = sel.to_k8s() {
        let path = flotilla_core::validation::FieldPath::new("selector");
        let back = LabelSelector::from_k8s(Some(&api), &path)
            .unwrap_or_else(|e| panic!("API form of {printed:?} is refused: {e}"));
        assert_eq!(back.matches(&labels), matched, "API form of {printed:?} on {labels:?}");
        assert_eq!(back.matches(&BTreeMap::new()), sel.matches(&BTreeMap::new()), "API form of {printed:?}");
    }
    for r in sel.requirements() {
        let _ = sel.requires_exact_match(r.key());
    }
});
