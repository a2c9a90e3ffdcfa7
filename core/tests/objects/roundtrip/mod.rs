//! Strategies that generate objects of every built-in kind for the round trips in
//! `t30_roundtrip`: the shared pieces (strings, quantities, times, metadata, selectors) here,
//! pods and pod templates in `pod`, the other core kinds in `core_kinds`, the kinds of named
//! API groups in `group_kinds`.
//!
//! Collections hold at most two elements, which is enough to show ordering and separators and
//! keeps 256 cases per kind fast in a debug build. Strings mix realistic values with ones YAML
//! must quote (`"true"`, `"1e3"`, `"~"`, `"- x"`, line breaks, control characters), since a
//! lossy YAML encoder shows only on such values.

pub(crate) mod core_kinds;
pub(crate) mod group_kinds;
pub(crate) mod pod;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    FieldsV1, LabelSelector, LabelSelectorRequirement, ManagedFieldsEntry, MicroTime, ObjectMeta,
    OwnerReference, Time,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

/// Strings a YAML emitter must quote or escape to read them back as the same string.
#[rustfmt::skip]
const TRICKY: &[&str] = &[
    "", "true", "False", "yes", "NO", "on", "off", "y", "null", "Null", "~", "0", "-1", "+1", "080",
    "0x1F", "0o17", "1e3", "1E-3", "1.5", ".5", ".inf", "-.Inf", ".NaN", "1_000", "12:30:00",
    "2026-11-26", "2026-11-26T00:00:00Z", "- item", "key: value", "a:b", "#comment", "a #b", "&anchor",
    "*alias", "!tag", "!!str", "%directive", "@at", "`tick", "'single'", "\"double\"", "[1, 2]",
    "{a: 1}", "|", ">", "?", ":", "-", "---", "...", "<<", "=", " leading", "trailing ", "two\nlines",
    "tab\there", "cr\r\n", "ünïcödé ✓ 日本", "\u{0}nul", "del\u{7f}", "nel\u{85}", "ls\u{2028}",
    "\u{feff}bom", "\\back\\slash",
];

/// Map keys that are valid Kubernetes label, annotation or data keys but read as something
/// other than a string when written unquoted in YAML.
const TRICKY_KEYS: &[&str] =
    &["1", "true", "null", "NO", "1e3", "0x1F", "08", ".", "-", "_", "<<", "=", "", "a.b/c"];

/// Resource names, as quantity maps use them.
const RESOURCE_NAMES: &[&str] =
    &["cpu", "memory", "ephemeral-storage", "hugepages-2Mi", "nvidia.com/gpu", "storage", "pods"];

/// Quantities as users write them, canonical or not: k8s-openapi keeps the string as written.
#[rustfmt::skip]
const QUANTITIES: &[&str] = &[
    "250m", "1Gi", "1e3", "1E3", "12e-3", "0", "1", "1.5", "+1", "-1", "100Mi", "1536Mi", "0.5Ki", "5n",
    "7u", "1k", "1M", "1G", "1T", "1P", "1E", "1Ei", "9223372036854775807",
];

/// Port protocols.
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];

/// Volume access modes.
const ACCESS_MODES: &[&str] = &["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];

/// The first and last second both Kubernetes (Go's RFC 3339 marshalling: years 1 to 9999)
/// and jiff can hold: jiff's `Timestamp` ends at 9999-12-30T22:00:00Z, a day short of
/// 9999-12-31T23:59:59Z (a CI run drew a second past it).
const FIRST_SECOND: i64 = -62_135_596_800;
const LAST_SECOND: i64 = 253_402_207_200;
/// jiff refuses microsecond timestamps at its very last second; a day earlier is plenty.
const LAST_MICROSECOND: i64 = (LAST_SECOND - 86_400) * 1_000_000;

/// Zero to two elements.
fn list<S: Strategy>(s: S) -> impl Strategy<Value = Vec<S::Value>> {
    vec(s, 0..3)
}

/// No list, or zero to two elements: `None` and `Some(vec![])` serialize differently.
fn opt_list<S: Strategy>(s: S) -> impl Strategy<Value = Option<Vec<S::Value>>> {
    proptest::option::of(list(s))
}

/// No map, or zero to two entries.
fn opt_map<K, V>(k: K, v: V) -> impl Strategy<Value = Option<BTreeMap<K::Value, V::Value>>>
where
    K: Strategy,
    K::Value: Ord,
    V: Strategy,
{
    proptest::option::of(btree_map(k, v, 0..3))
}

/// `None` or a value.
fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::of(s)
}

/// One of `values`, owned.
fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(values).prop_map(String::from)
}

/// An object name (a DNS label, which may still read as a number: `"123"`, `"1e3"`).
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?"
}

/// Free text: realistic words, strings YAML must quote, and any characters at all.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 ._/:-]{0,12}",
        2 => one_of(TRICKY),
        1 => "(?s).{0,6}",
    ]
    .boxed()
}

/// A label, annotation or data key.
fn key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "([a-z]{1,5}\\.[a-z]{2,3}/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]{0,8}[a-zA-Z0-9])?",
        1 => one_of(TRICKY_KEYS),
    ]
    .boxed()
}

/// Labels, annotations, node selectors, parameters: any keys, any values.
fn string_map() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    opt_map(key(), text())
}

/// A quantity string, from the list of typical ones or the general grammar.
fn quantity() -> impl Strategy<Value = Quantity> {
    prop_oneof![one_of(QUANTITIES), "[+-]?[0-9]{1,4}(\\.[0-9]{1,3})?(m|k|M|G|Ki|Mi|Gi|e[0-9]|E-[0-9])?",]
        .prop_map(Quantity)
}

/// Resource name to quantity (requests, limits, capacity).
fn quantities() -> impl Strategy<Value = Option<BTreeMap<String, Quantity>>> {
    opt_map(one_of(RESOURCE_NAMES), quantity())
}

/// A port as a number or a name; numeric-looking names must stay strings.
fn int_or_string() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        any::<i32>().prop_map(IntOrString::Int),
        prop_oneof![name(), "[0-9]{1,5}", "[0-9]{1,3}%"].prop_map(IntOrString::String),
    ]
}

/// A whole-second time: `Time` is written with seconds precision.
fn time() -> impl Strategy<Value = Time> {
    (FIRST_SECOND..=LAST_SECOND)
        .prop_map(|s| Time(Timestamp::from_second(s).expect("years 1 to 9999 are in jiff's range")))
}

/// A whole-microsecond time: `MicroTime` is written with exactly six fractional digits.
fn micro_time() -> impl Strategy<Value = MicroTime> {
    (FIRST_SECOND * 1_000_000..=LAST_MICROSECOND).prop_map(|us| {
        MicroTime(Timestamp::from_microsecond(us).expect("years 1 to 9999 are in jiff's range"))
    })
}

/// An IPv4 or IPv6 address as Kubernetes writes it (`"::1"` must survive YAML).
fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| Ipv6Addr::from(a).to_string()),
    ]
}

/// Base64 data (ConfigMap `binaryData`, Secret `data`).
fn bytes() -> impl Strategy<Value = ByteString> {
    vec(any::<u8>(), 0..8).prop_map(ByteString)
}

/// A condition status.
fn condition_status() -> impl Strategy<Value = String> {
    one_of(&["True", "False", "Unknown"])
}

/// An object uid.
fn uid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

/// A reference to any object (events, endpoints, claims).
fn object_reference() -> impl Strategy<Value = ObjectReference> {
    (
        (opt(one_of(&["v1", "apps/v1"])), opt(text()), opt(one_of(&["Pod", "Node"]))),
        (opt(name()), opt(name()), opt("[0-9]{1,6}"), opt(uid())),
    )
        .prop_map(|((api_version, field_path, kind), (name, namespace, resource_version, uid))| {
            ObjectReference { api_version, field_path, kind, name, namespace, resource_version, uid }
        })
}

fn owner_reference() -> impl Strategy<Value = OwnerReference> {
    (
        one_of(&["v1", "apps/v1"]),
        one_of(&["ReplicaSet", "Deployment"]),
        name(),
        uid(),
        opt(any::<bool>()),
        opt(any::<bool>()),
    )
        .prop_map(|(api_version, kind, name, uid, controller, block_owner_deletion)| OwnerReference {
            api_version,
            block_owner_deletion,
            controller,
            kind,
            name,
            uid,
        })
}

/// A `fieldsV1` set as the API server writes it: nested objects with `{}` leaves, keyed by
/// `f:<name>`, `k:<json>`, `v:<json>` and `.`.
fn fields_v1() -> impl Strategy<Value = FieldsV1> {
    let key = prop_oneof![
        Just(".".to_string()),
        name().prop_map(|n| format!("f:{n}")),
        name().prop_map(|n| format!("k:{{\"name\":\"{n}\"}}")),
        any::<i32>().prop_map(|n| format!("v:{n}")),
    ];
    let leaf = Just(serde_json::Value::Object(serde_json::Map::new()));
    leaf.prop_recursive(2, 8, 2, move |inner| {
        btree_map(key.clone(), inner, 0..3).prop_map(|m| serde_json::Value::Object(m.into_iter().collect()))
    })
    .prop_map(FieldsV1)
}

fn managed_fields_entry() -> impl Strategy<Value = ManagedFieldsEntry> {
    (
        opt(name()),
        opt(Just("FieldsV1".to_string())),
        opt(fields_v1()),
        opt(name()),
        opt(one_of(&["Apply", "Update"])),
        opt(one_of(&["", "status", "scale"])),
        opt(time()),
    )
        .prop_map(|(manager, fields_type, fields_v1, api_version, operation, subresource, time)| {
            ManagedFieldsEntry { api_version, fields_type, fields_v1, manager, operation, subresource, time }
        })
}

prop_compose! {
    /// Metadata with every field the registry reads or writes.
    fn object_meta_unboxed()(
        (name, generate_name, namespace, uid, resource_version, generation) in (
            opt(name()),
            opt(name()),
            opt(name()),
            opt(uid()),
            opt("[0-9]{1,12}"),
            opt(any::<i64>()),
        ),
        (creation_timestamp, deletion_timestamp, deletion_grace_period_seconds, self_link) in
            (opt(time()), opt(time()), opt(any::<i64>()), opt(text())),
        (labels, annotations, finalizers, owner_references, managed_fields) in (
            string_map(),
            string_map(),
            opt_list(prop_oneof![name(), Just("kubernetes.io/pv-protection".to_string())]),
            opt_list(owner_reference()),
            opt_list(managed_fields_entry()),
        ),
    ) -> ObjectMeta {
        ObjectMeta {
            annotations,
            creation_timestamp,
            deletion_grace_period_seconds,
            deletion_timestamp,
            finalizers,
            generate_name,
            generation,
            labels,
            managed_fields,
            name,
            namespace,
            owner_references,
            resource_version,
            self_link,
            uid,
        }
    }
}

/// Metadata, boxed: unboxed, a whole object's value tree overflows a test thread's stack in a
/// debug build.
fn object_meta() -> BoxedStrategy<ObjectMeta> {
    object_meta_unboxed().boxed()
}

/// A label selector with both forms.
fn label_selector() -> impl Strategy<Value = LabelSelector> {
    let requirement = (key(), one_of(&["In", "NotIn", "Exists", "DoesNotExist"]), opt_list(text()))
        .prop_map(|(key, operator, values)| LabelSelectorRequirement { key, operator, values });
    (string_map(), opt_list(requirement))
        .prop_map(|(match_labels, match_expressions)| LabelSelector { match_expressions, match_labels })
}

#[test]
fn the_time_bounds_are_representable() {
    for s in [FIRST_SECOND, LAST_SECOND] {
        assert!(Timestamp::from_second(s).is_ok(), "second {s}");
    }
    for us in [FIRST_SECOND * 1_000_000, LAST_MICROSECOND] {
        assert!(Timestamp::from_microsecond(us).is_ok(), "microsecond {us}");
    }
}
