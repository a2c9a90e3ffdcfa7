//! Conversions between [`LabelSelector`] and the API's `LabelSelector` (`matchLabels` and
//! `matchExpressions`), with the checks of Kubernetes' `ValidateLabelSelector`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

use super::error::{Result, SelectorError};
use super::label::{LabelSelector, Operator, Requirement};
use crate::validation::{
    ErrorList, FieldError, FieldPath, is_valid_label_value, validate_label_name, validate_labels,
};

/// Checks an API label selector (Kubernetes' `ValidateLabelSelector`), reporting problems at
/// paths below `path` such as `spec.selector.matchExpressions[1].values`.
///
/// Label keys must be qualified names and values label values; `In` and `NotIn` need values,
/// `Exists` and `DoesNotExist` forbid them; no other operator is allowed. An absent selector is
/// valid.
pub fn validate_label_selector(selector: Option<&meta::LabelSelector>, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(selector) = selector else {
        return errs;
    };
    if let Some(labels) = &selector.match_labels {
        errs.extend(validate_labels(labels, &path.child("matchLabels")));
    }
    let expressions_path = path.child("matchExpressions");
    for (i, expression) in selector.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_requirement(expression, &expressions_path.index(i)));
    }
    errs
}

fn validate_requirement(expression: &meta::LabelSelectorRequirement, path: &FieldPath) -> ErrorList {
    let mut errs = ErrorList::new();
    let values = expression.values.as_deref().unwrap_or_default();
    let values_path = path.child("values");
    match expression.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            errs.push(FieldError::required(
                &values_path,
                "must be specified when `operator` is 'In' or 'NotIn'",
            ));
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            errs.push(FieldError::forbidden(
                &values_path,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ));
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => {
            errs.push(FieldError::invalid(path.child("operator"), other, "not a valid selector operator"))
        }
    }
    errs.extend(validate_label_name(&expression.key, &path.child("key")));
    for (i, value) in values.iter().enumerate() {
        for msg in is_valid_label_value(value) {
            errs.push(FieldError::invalid(values_path.index(i), value.as_str(), msg));
        }
    }
    errs
}

impl LabelSelector {
    /// Converts an API label selector found at `path` (Kubernetes' `LabelSelectorAsSelector`),
    /// after checking it with [`validate_label_selector`]; the errors are field errors, ready to
    /// join an object's other validation errors.
    ///
    /// Takes a `&LabelSelector` or an `Option<&LabelSelector>`. As in Kubernetes, an absent
    /// selector (`None`, a JSON `null`) selects **nothing**, while a present but empty one (`{}`)
    /// selects **everything**.
    ///
    /// ```
    /// use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    /// use flotilla_core::selector::LabelSelector;
    /// use flotilla_core::validation::FieldPath;
    ///
    /// let path = FieldPath::new("spec").child("selector");
    /// assert!(LabelSelector::from_k8s(None, &path)?.matches_nothing());
    /// assert!(LabelSelector::from_k8s(&meta::LabelSelector::default(), &path)?.is_empty());
    ///
    /// let bad = meta::LabelSelector {
    ///     match_expressions: Some(vec![meta::LabelSelectorRequirement {
    ///         key: "tier".into(),
    ///         operator: "In".into(),
    ///         values: None,
    ///     }]),
    ///     ..Default::default()
    /// };
    /// let errs = LabelSelector::from_k8s(&bad, &path).unwrap_err();
    /// assert_eq!(
    ///     errs.to_string(),
    ///     "spec.selector.matchExpressions[0].values: Required value: \
    ///      must be specified when `operator` is 'In' or 'NotIn'"
    /// );
    /// # Ok::<(), flotilla_core::validation::ErrorList>(())
    /// ```
    pub fn from_k8s<'a>(
        selector: impl Into<Option<&'a meta::LabelSelector>>,
        path: &FieldPath,
    ) -> std::result::Result<Self, ErrorList> {
        let selector = selector.into();
        validate_label_selector(selector, path).into_result()?;
        let Some(selector) = selector else {
            return Ok(Self::nothing());
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::unchecked(key.clone(), Operator::Equals, vec![value.clone()]));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                // validate_label_selector let no other operator through.
                _ => Operator::DoesNotExist,
            };
            let values = expression.values.clone().unwrap_or_default();
            requirements.push(Requirement::unchecked(expression.key.clone(), operator, values));
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Converts to an API label selector (Kubernetes' `ParseToLabelSelector`): `=` and `==` become
    /// `matchLabels`, the set operators `matchExpressions`. [`nothing`](Self::nothing) becomes
    /// `None`.
    ///
    /// `!=`, `>` and `<` have no API form and are an error. A key required to equal two
    /// values, which `matchLabels` cannot hold, keeps its second value as an `In` expression
    /// (Kubernetes would silently keep only the last).
    pub fn to_k8s(&self) -> Result<Option<meta::LabelSelector>> {
        if self.matches_nothing() {
            return Ok(None);
        }
        let mut labels = BTreeMap::new();
        let mut expressions = Vec::new();
        for requirement in self.requirements() {
            let (operator, values) = match requirement.operator() {
                Operator::Equals | Operator::DoubleEquals => {
                    if let [value] = requirement.values()
                        && !labels.contains_key(requirement.key())
                    {
                        labels.insert(requirement.key().to_string(), value.clone());
                        continue;
                    }
                    ("In", Some(requirement.values().to_vec()))
                }
                Operator::In => ("In", Some(requirement.values().to_vec())),
                Operator::NotIn => ("NotIn", Some(requirement.values().to_vec())),
                Operator::Exists => ("Exists", None),
                Operator::DoesNotExist => ("DoesNotExist", None),
                op @ (Operator::NotEquals | Operator::GreaterThan | Operator::LessThan) => {
                    return Err(SelectorError::NotExpressible {
                        selector: self.to_string(),
                        operator: op.as_str(),
                    });
                }
            };
            expressions.push(meta::LabelSelectorRequirement {
                key: requirement.key().to_string(),
                operator: operator.to_string(),
                values,
            });
        }
        Ok(Some(meta::LabelSelector {
            match_labels: (!labels.is_empty()).then_some(labels),
            match_expressions: (!expressions.is_empty()).then_some(expressions),
        }))
    }
}

impl TryFrom<&meta::LabelSelector> for LabelSelector {
    type Error = SelectorError;

    /// [`LabelSelector::from_k8s`] with errors at paths relative to the selector
    /// (`matchExpressions[0].values`), as [`SelectorError::InvalidLabelSelector`].
    fn try_from(selector: &meta::LabelSelector) -> Result<Self> {
        Self::from_k8s(selector, &FieldPath::root())
            .map_err(|errors| SelectorError::InvalidLabelSelector { errors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(key: &str, operator: &str, values: Option<&[&str]>) -> meta::LabelSelectorRequirement {
        meta::LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn api(labels: &[(&str, &str)], expressions: Vec<meta::LabelSelectorRequirement>) -> meta::LabelSelector {
        meta::LabelSelector {
            match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: Some(expressions),
        }
    }

    fn path() -> FieldPath {
        FieldPath::new("spec").child("selector")
    }

    #[test]
    fn nil_selects_nothing_and_empty_selects_everything() {
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let nothing = LabelSelector::from_k8s(None, &path()).expect("nil is valid");
        assert!(nothing.matches_nothing());
        assert!(!nothing.matches(&labels));
        assert!(!nothing.matches(&BTreeMap::new()));
        for empty in [meta::LabelSelector::default(), api(&[], vec![])] {
            let everything = LabelSelector::try_from(&empty).expect("empty is valid");
            assert!(everything.is_empty());
            assert!(everything.matches(&labels));
            assert!(everything.matches(&BTreeMap::new()));
        }
    }

    #[test]
    fn converts_labels_and_expressions() {
        let selector = api(
            &[("app", "web")],
            vec![
                expr("tier", "NotIn", Some(&["db", "cache"])),
                expr("env", "In", Some(&["prod"])),
                expr("canary", "DoesNotExist", None),
                expr("track", "Exists", Some(&[])),
            ],
        );
        let sel = LabelSelector::from_k8s(&selector, &path()).expect("valid");
        assert_eq!(sel.to_string(), "app=web,!canary,env in (prod),tier notin (cache,db),track");
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(sel.matches(&l(&[("app", "web"), ("env", "prod"), ("track", "")])));
        assert!(!sel.matches(&l(&[("app", "web"), ("env", "prod"), ("track", ""), ("tier", "db")])));
        assert!(!sel.matches(&l(&[("app", "web"), ("env", "prod"), ("track", ""), ("canary", "1")])));
        assert!(!sel.matches(&l(&[("app", "web"), ("track", "")])));

        let back = sel.to_k8s().expect("expressible").expect("present");
        assert_eq!(LabelSelector::try_from(&back).expect("valid"), sel);
        assert_eq!(LabelSelector::nothing().to_k8s().expect("expressible"), None);
        assert_eq!(
            LabelSelector::everything().to_k8s().expect("expressible"),
            Some(meta::LabelSelector::default())
        );
    }

    #[test]
    fn to_k8s_rejects_operators_without_an_api_form() {
        for input in ["a!=b", "a>1", "a<1"] {
            let sel = LabelSelector::parse(input).expect("valid");
            assert!(matches!(sel.to_k8s(), Err(SelectorError::NotExpressible { .. })), "{input}");
        }
        let sel = LabelSelector::parse("a=x,a==y,b==z").expect("valid");
        let back = sel.to_k8s().expect("expressible").expect("present");
        let back = LabelSelector::try_from(&back).expect("valid");
        let l =
            |v: &str| BTreeMap::from([("a".to_string(), v.to_string()), ("b".to_string(), "z".to_string())]);
        for v in ["x", "y"] {
            assert_eq!(back.matches(&l(v)), sel.matches(&l(v)));
        }
    }

    #[test]
    fn errors_name_the_offending_fields() {
        let selector = api(
            &[("bad key", "ok")],
            vec![
                expr("ok", "In", Some(&["fine"])),
                expr("tier", "In", None),
                expr("canary", "Exists", Some(&["x"])),
                expr("x", "Gt", Some(&["1"])),
                expr("-k", "NotIn", Some(&["ok", "-bad"])),
            ],
        );
        let Err(errors) = LabelSelector::from_k8s(Some(&selector), &path()) else {
            panic!("expected an invalid selector");
        };
        let relative = LabelSelector::try_from(&selector).map_err(|e| e.to_string());
        assert!(
            relative.is_err_and(|msg| msg.starts_with("invalid label selector: [matchLabels: Invalid value"))
        );
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(got[0].starts_with(r#"spec.selector.matchLabels: Invalid value: "bad key": name part"#));
        assert_eq!(
            got[1],
            "spec.selector.matchExpressions[1].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert_eq!(
            got[2],
            "spec.selector.matchExpressions[2].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        );
        assert_eq!(
            got[3],
            r#"spec.selector.matchExpressions[3].operator: Invalid value: "Gt": not a valid selector operator"#
        );
        assert!(
            got[4].starts_with(r#"spec.selector.matchExpressions[4].key: Invalid value: "-k": name part"#)
        );
        assert!(got[5].starts_with(
            r#"spec.selector.matchExpressions[4].values[1]: Invalid value: "-bad": a valid label"#
        ));
        assert!(validate_label_selector(None, &path()).is_empty());
    }
}
