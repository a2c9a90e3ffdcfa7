//! Quantities on the wire: serde (the canonical string) and k8s-openapi's string newtype.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as WireQuantity;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use super::{Quantity, QuantityError};

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Accepts what apimachinery's `UnmarshalJSON` accepts: a string, with surrounding whitespace
/// ignored, or a number.
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(QuantityVisitor)
        } else {
            deserializer.deserialize_str(QuantityVisitor)
        }
    }
}

struct QuantityVisitor;

impl QuantityVisitor {
    fn number<E: de::Error>(text: &str) -> Result<Quantity, E> {
        Quantity::parse(text).map_err(E::custom)
    }
}

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as \"250m\" or \"1Gi\", or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        Quantity::parse(v.trim()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        Self::number(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Self::number(&v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Quantity, E> {
        Self::number(&v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Quantity, E> {
        Self::number(&v.to_string())
    }

    /// A float reaches us already rounded to binary; its shortest round-trip decimal text is
    /// what the document most likely said ("1.5", "0.25"), and is what k8s-openapi keeps.
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        if !v.is_finite() {
            return Err(E::invalid_value(de::Unexpected::Float(v), &self));
        }
        Self::number(&v.to_string())
    }
}

impl From<&Quantity> for WireQuantity {
    /// The canonical string.
    fn from(q: &Quantity) -> Self {
        WireQuantity(q.to_string())
    }
}

impl From<Quantity> for WireQuantity {
    /// The canonical string.
    fn from(q: Quantity) -> Self {
        WireQuantity(q.to_string())
    }
}

impl TryFrom<&WireQuantity> for Quantity {
    type Error = QuantityError;

    /// Parses the string, ignoring surrounding whitespace as apimachinery's JSON decoding does.
    fn try_from(q: &WireQuantity) -> Result<Self, QuantityError> {
        Quantity::parse(q.0.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::Format;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn serializes_as_the_canonical_string() {
        let json = serde_json::to_string(&[q("1.5Gi"), q("1000m"), q("-0.5"), q("1e3")]).expect("serializes");
        assert_eq!(json, r#"["1536Mi","1","-500m","1e3"]"#);
    }

    #[test]
    fn deserializes_strings_and_numbers_like_kubernetes() {
        let cases = [
            (r#""1Gi""#, "1Gi"),
            (r#"" 1""#, "1"),
            (r#""1 ""#, "1"),
            ("1", "1"),
            (" 1", "1"),
            ("-1", "-1"),
            ("10", "10"),
            ("1.5", "1500m"),
            ("0.25", "250m"),
            ("18446744073709551615", "18446744073709551615"),
            ("1e3", "1k"),
        ];
        for (json, canonical) in cases {
            let got: Quantity = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(got.to_string(), canonical, "{json}");
        }
        assert_eq!(serde_json::from_str::<Quantity>("7").expect("a number").format(), Format::DecimalSI);
        for json in [r#""1Gb""#, r#""""#, "true", "null", "[]", r#"{"a":1}"#] {
            assert!(serde_json::from_str::<Quantity>(json).is_err(), "{json}");
        }
        let err = serde_json::from_str::<Quantity>(r#""1.2.3""#).expect_err("invalid");
        assert!(err.to_string().contains("invalid quantity \"1.2.3\" at character 3"), "{err}");
    }

    #[test]
    fn deserializes_yaml_scalars() {
        let got: Vec<Quantity> = serde_yaml_ng::from_str("[100m, 1Gi, 2, 0.5, '1e3']").expect("valid yaml");
        let text: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["100m", "1Gi", "2", "500m", "1e3"]);
    }

    #[test]
    fn converts_to_and_from_k8s_openapi() {
        let wire = WireQuantity::from(&q("1024Ki"));
        assert_eq!(wire.0, "1Mi");
        assert_eq!(Quantity::try_from(&wire), Ok(q("1Mi")));
        assert_eq!(WireQuantity::from(q("0.5")).0, "500m");
        assert_eq!(Quantity::try_from(&WireQuantity(" 2k ".to_owned())), Ok(q("2000")));
        assert!(matches!(
            Quantity::try_from(&WireQuantity("1 Gi".to_owned())),
            Err(QuantityError::Invalid { position: 1, .. })
        ));
        // Through JSON, the way objects carry it.
        let wire: WireQuantity = serde_json::from_str("1.5").expect("k8s-openapi accepts numbers");
        assert_eq!(Quantity::try_from(&wire).map(|q| q.to_string()), Ok("1500m".to_owned()));
    }
}
