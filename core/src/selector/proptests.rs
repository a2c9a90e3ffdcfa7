//! Property tests: parsers never panic, printed selectors parse back to themselves, and
//! matching keeps Kubernetes' complementary pairs (`in`/`notin`, `=`/`!=`, `key`/`!key`).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{FieldOperator, FieldRequirement, FieldSelector, LabelSelector, Operator, Requirement};

fn label_key() -> impl Strategy<Value = String> {
    let name = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?";
    let prefix = prop::option::of("[a-z0-9]{1,3}(\\.[a-z0-9]{1,3}){0,2}");
    (prefix, name).prop_map(|(prefix, name)| match prefix {
        Some(prefix) => format!("{prefix}/{name}"),
        None => name,
    })
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9]([-A-Za-z0-9_.]{0,6}[A-Za-z0-9])?"]
}

fn operator() -> impl Strategy<Value = Operator> {
    prop::sample::select(vec![
        Operator::Equals,
        Operator::DoubleEquals,
        Operator::NotEquals,
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
        Operator::GreaterThan,
        Operator::LessThan,
    ])
}

/// A requirement as the parser would build it: set values sorted and without repeats.
fn requirement() -> impl Strategy<Value = Requirement> {
    (label_key(), operator(), prop::collection::btree_set(label_value(), 1..4), "[0-9]{1,6}").prop_map(
        |(key, op, set, number)| {
            let values: Vec<String> = match op {
                Operator::In | Operator::NotIn => set.into_iter().collect(),
                Operator::Exists | Operator::DoesNotExist => Vec::new(),
                Operator::GreaterThan | Operator::LessThan => vec![number],
                _ => set.into_iter().take(1).collect(),
            };
            Requirement::new(key, op, values).expect("generated requirements are valid")
        },
    )
}

/// Labels over a small universe of keys and values, so that requirements hit them often.
fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["a", "b", "x.io/c", "in"]).prop_map(String::from),
        prop::sample::select(vec!["", "v", "w", "1", "42"]).prop_map(String::from),
        0..4,
    )
}

fn small_requirement() -> impl Strategy<Value = (String, BTreeSet<String>)> {
    (
        prop::sample::select(vec!["a", "b", "x.io/c", "in", "zz"]).prop_map(String::from),
        prop::collection::btree_set(
            prop::sample::select(vec!["", "v", "w", "1"]).prop_map(String::from),
            1..3,
        ),
    )
}

fn field_requirement() -> impl Strategy<Value = FieldRequirement> {
    let value = prop_oneof!["[a-z ,=\\\\!.]{0,10}", any::<String>()];
    let op = prop::sample::select(vec![FieldOperator::Equals, FieldOperator::NotEquals]);
    ("[a-z][a-z.]{0,10}", op, value).prop_map(|(field, operator, value)| FieldRequirement {
        field,
        operator,
        value,
    })
}

const SELECTOR_ALPHABET: &str = "[a-z0-9 !=(),<>\t.\\\\/_-]{0,40}";

proptest! {
    #[test]
    fn label_parser_never_panics(input in any::<String>()) {
        let _ = LabelSelector::parse(&input);
    }

    #[test]
    fn label_parser_never_panics_on_selector_like_input(input in SELECTOR_ALPHABET) {
        if let Ok(sel) = LabelSelector::parse(&input) {
            // Whatever parses prints back to something that parses to the same selector.
            prop_assert_eq!(LabelSelector::parse(&sel.to_string()).ok(), Some(sel));
        }
    }

    #[test]
    fn field_parser_never_panics(input in any::<String>()) {
        let _ = FieldSelector::parse(&input);
    }

    #[test]
    fn field_parser_never_panics_on_selector_like_input(input in SELECTOR_ALPHABET) {
        if let Ok(sel) = FieldSelector::parse(&input) {
            prop_assert_eq!(FieldSelector::parse(&sel.to_string()).ok(), Some(sel));
        }
    }

    #[test]
    fn label_selectors_round_trip(requirements in prop::collection::vec(requirement(), 0..6)) {
        let sel = LabelSelector::from_requirements(requirements);
        let printed = sel.to_string();
        let parsed = LabelSelector::parse(&printed);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&sel), "{} gave {:?}", printed, parsed);
    }

    #[test]
    fn field_selectors_round_trip(requirements in prop::collection::vec(field_requirement(), 0..6)) {
        let sel = FieldSelector::from_requirements(requirements);
        let printed = sel.to_string();
        let parsed = FieldSelector::parse(&printed);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&sel), "{} gave {:?}", printed, parsed);
    }

    #[test]
    fn complementary_operators_never_agree((key, values) in small_requirement(), labels in labels()) {
        let values: Vec<String> = values.into_iter().collect();
        let one = vec![values[0].clone()];
        let pairs = [
            (Operator::In, Operator::NotIn, values.clone()),
            (Operator::Equals, Operator::NotEquals, one.clone()),
            (Operator::DoubleEquals, Operator::NotEquals, one),
            (Operator::Exists, Operator::DoesNotExist, Vec::new()),
        ];
        for (positive, negative, values) in pairs {
            let p = Requirement::new(key.clone(), positive, values.clone()).expect("valid");
            let n = Requirement::new(key.clone(), negative, values).expect("valid");
            prop_assert_ne!(p.matches(&labels), n.matches(&labels), "{} vs {} on {:?}", p, n, labels);
        }
    }

    #[test]
    fn set_operators_agree_with_a_model((key, values) in small_requirement(), labels in labels()) {
        let values_vec: Vec<String> = values.iter().cloned().collect();
        let sel_in = Requirement::new(key.clone(), Operator::In, values_vec.clone()).expect("valid");
        let sel_exists = Requirement::new(key.clone(), Operator::Exists, Vec::new()).expect("valid");
        let model_in = labels.get(&key).is_some_and(|v| values.contains(v));
        prop_assert_eq!(sel_in.matches(&labels), model_in);
        prop_assert_eq!(sel_exists.matches(&labels), labels.contains_key(&key));
    }

    #[test]
    fn a_selector_from_labels_matches_them_and_their_supersets(
        set in labels(),
        extra in labels(),
    ) {
        let sel = LabelSelector::from_labels(&set).expect("generated labels are valid");
        prop_assert!(sel.matches(&set));
        let mut superset = extra;
        superset.extend(set.clone());
        prop_assert!(sel.matches(&superset));
        prop_assert_eq!(LabelSelector::parse(&sel.to_string()).ok(), Some(sel));
    }
}
