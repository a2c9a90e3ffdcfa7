//! A decoded protobuf message as Kubernetes' JSON, walking the message's descriptor.
//!
//! Proto field names are the JSON names. The types whose JSON form is not their message
//! shape are special-cased: `IntOrString`, `Quantity`, `Time`, `MicroTime`, `Duration`,
//! `RawExtension`, `FieldsV1`, apiextensions' `JSON` and `JSONSchemaPropsOr*`, and the
//! `{items: [...]}` wrappers of string lists (`ExtraValue`, `Verbs`).
//!
//! Go's protobuf marshalling writes every non-pointer field, so a decoded message says
//! `""` for strings Go left empty; those are dropped (in Kubernetes' JSON they are omitted),
//! as are empty lists and maps, zero times and a zero `metadata.generation`. Other zero
//! numbers and `false` stay: a pointer field set to zero (`replicas: 0`) must survive.

use base64::Engine;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value as Pb};
use serde_json::{Map, Number, Value};

/// Why a message could not be turned into JSON.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A field's content is not what its type needs.
    #[error("{path}: {reason}")]
    Field {
        /// The JSON path of the field (`spec.template.metadata`).
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// The JSON form of `m`; `path` names where `m` sits, for error messages.
pub(crate) fn message(m: &DynamicMessage, path: &str) -> Result<Value, Error> {
    let d = m.descriptor();
    let (full, name) = (d.full_name(), d.name());
    let field = |n: &str| m.get_field_by_name(n).filter(|_| m.has_field_by_name(n));
    match full {
        "apimachinery.pkg.util.intstr.IntOrString" => {
            let is_string = field("type").is_some_and(|t| t.as_i64() == Some(1));
            let v = if is_string { field("strVal") } else { field("intVal") };
            return Ok(match v {
                Some(v) => scalar(&v, path)?,
                None if is_string => Value::String(String::new()),
                None => Value::from(0),
            });
        }
        "apimachinery.pkg.api.resource.Quantity" => {
            return Ok(field("string")
                .and_then(|v| v.as_str().map(|s| Value::String(s.into())))
                .unwrap_or(Value::Null));
        }
        "apimachinery.pkg.apis.meta.v1.Time" | "apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let seconds = field("seconds").and_then(|v| v.as_i64());
            let nanos = field("nanos").and_then(|v| v.as_i32()).unwrap_or(0);
            return time(seconds, nanos, name == "MicroTime")
                .map_err(|reason| Error::Field { path: path.into(), reason });
        }
        "apimachinery.pkg.apis.meta.v1.Duration" => {
            return Ok(Value::String(duration(field("duration").and_then(|v| v.as_i64()).unwrap_or(0))));
        }
        "apimachinery.pkg.runtime.RawExtension"
        | "apimachinery.pkg.apis.meta.v1.FieldsV1"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON"
        | "apiextensions_apiserver.pkg.apis.apiextensions.v1beta1.JSON" => {
            let raw = m.fields().find_map(|(_, v)| v.as_bytes().cloned()).unwrap_or_default();
            return embedded_json(&raw, path);
        }
        _ => {}
    }
    if full.starts_with("apiextensions_apiserver.") && name.starts_with("JSONSchemaPropsOr") {
        // Either the schema, or the other member (a bool or a list).
        let mut obj = fields(m, path)?;
        return Ok(match obj.remove("schema") {
            Some(schema) => schema,
            None => obj.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        });
    }
    if full == "apimachinery.pkg.apis.meta.v1.ObjectMeta" {
        // Go writes the (server-managed) generation even when unset; JSON omits a zero.
        let mut obj = fields(m, path)?;
        if obj.get("generation").and_then(Value::as_i64) == Some(0) {
            obj.remove("generation");
        }
        return Ok(Value::Object(obj));
    }
    if matches!(name, "ExtraValue" | "Verbs") {
        return Ok(fields(m, path)?.remove("items").unwrap_or_else(|| Value::Array(Vec::new())));
    }
    Ok(Value::Object(fields(m, path)?))
}

/// The JSON fields of a message that are present (see the module doc for what is dropped).
fn fields(m: &DynamicMessage, path: &str) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    for (f, v) in m.fields() {
        let name = f.name();
        let at = if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
        let v = match v {
            Pb::String(s) if s.is_empty() => continue,
            Pb::List(items) if items.is_empty() => continue,
            Pb::Map(map) if map.is_empty() => continue,
            Pb::EnumNumber(n) => match f.kind() {
                Kind::Enum(e) => {
                    e.get_value(*n).map_or(Value::from(*n), |ev| Value::String(ev.name().into()))
                }
                _ => Value::from(*n),
            },
            v => value(v, &at)?,
        };
        if !v.is_null() {
            out.insert(name.to_string(), v);
        }
    }
    Ok(out)
}

/// The JSON value of one field value.
fn value(v: &Pb, at: &str) -> Result<Value, Error> {
    match v {
        Pb::Message(m) => message(m, at),
        Pb::List(items) => Ok(Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| value(v, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        )),
        Pb::Map(map) => {
            let mut obj = Map::new();
            for (k, v) in map {
                let key = match k {
                    MapKey::String(s) => s.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                let v = value(v, &format!("{at}[{key:?}]"))?;
                obj.insert(key, v);
            }
            Ok(Value::Object(obj))
        }
        other => scalar(other, at),
    }
}

/// The JSON value of a non-message value: numbers, strings, base64 for bytes.
fn scalar(v: &Pb, at: &str) -> Result<Value, Error> {
    Ok(match v {
        Pb::U32(n) => Value::from(*n),
        Pb::U64(n) => Value::from(*n),
        Pb::I32(n) | Pb::EnumNumber(n) => Value::from(*n),
        Pb::I64(n) => Value::from(*n),
        Pb::F32(n) => float(f64::from(*n), at)?,
        Pb::F64(n) => float(*n, at)?,
        Pb::Bool(b) => Value::Bool(*b),
        Pb::String(s) => Value::String(s.clone()),
        Pb::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        nested => value(nested, at)?,
    })
}

fn float(n: f64, at: &str) -> Result<Value, Error> {
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| Error::Field { path: at.into(), reason: format!("{n} is not a finite number") })
}

/// Bytes that hold a JSON document (RawExtension, FieldsV1, JSON) as that document.
fn embedded_json(raw: &[u8], at: &str) -> Result<Value, Error> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw).map_err(|e| Error::Field {
        path: at.into(),
        reason: format!("the embedded object is not JSON ({e}); only JSON raw objects are supported"),
    })
}

/// Seconds before the Unix epoch of `0001-01-01T00:00:00Z`, Go's zero time.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// A `Time` (`2006-01-02T15:04:05Z`) or `MicroTime` (`2006-01-02T15:04:05.000000Z`); `null`
/// for Go's zero time, which Kubernetes encodes as an empty message.
pub(crate) fn time(seconds: Option<i64>, nanos: i32, micro: bool) -> Result<Value, String> {
    let seconds = match seconds {
        None if nanos == 0 => return Ok(Value::Null),
        Some(GO_ZERO_TIME) if nanos == 0 => return Ok(Value::Null),
        s => s.unwrap_or(0),
    };
    let ts = jiff::Timestamp::new(seconds, nanos)
        .map_err(|e| format!("{seconds}s {nanos}ns is not a valid time: {e}"))?;
    let whole = ts.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(Value::String(if micro {
        format!("{whole}.{:06}Z", ts.subsec_microsecond())
    } else {
        format!("{whole}Z")
    }))
}

/// A duration in nanoseconds as Go's `time.Duration.String()` spells it (`1h2m3.5s`).
pub(crate) fn duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", fraction(n, 1_000_000));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / unit` with the fractional digits Go prints (no trailing zeros).
fn fraction(n: u64, unit: u64) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}
