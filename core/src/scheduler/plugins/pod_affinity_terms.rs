//! Pod affinity terms as kube-scheduler reads them (`framework.AffinityTerm`): which pods a
//! term selects, and counts of matching pods per topology domain.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};

use crate::selector::{LabelSelector, Operator, Requirement};
use crate::validation::FieldPath;

/// One required or preferred pod (anti-)affinity term, parsed.
///
/// A term selects a pod when the pod's namespace is one of the term's namespaces and its labels
/// match the term's label selector (an absent selector matches no pod).
///
/// Namespaces: with neither `namespaces` nor `namespaceSelector`, the term's own pod's
/// namespace; otherwise the listed namespaces, plus every namespace if `namespaceSelector` is
/// `{}`. The snapshot holds no namespace labels, so a non-empty `namespaceSelector` adds no
/// namespace (kube-scheduler would add the namespaces whose labels it matches).
///
/// `matchLabelKeys` and `mismatchLabelKeys` are merged into the selector from the owning pod's
/// labels (`key in (value)`, `key notin (value)`), as the API server does when the pod is
/// created; merging an already merged term again changes nothing.
#[derive(Clone, Debug)]
pub(crate) struct AffinityTerm {
    selector: LabelSelector,
    namespaces: BTreeSet<String>,
    all_namespaces: bool,
    /// The node label whose values are the term's topology domains.
    pub(crate) topology_key: String,
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod's labels (none if absent).
pub(crate) fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

impl AffinityTerm {
    /// Parses `term` of `owner`, found at `path`; an invalid selector is an error naming its
    /// field.
    fn parse(owner: &Pod, term: &PodAffinityTerm, path: &FieldPath) -> Result<AffinityTerm, String> {
        let mut selector =
            LabelSelector::from_k8s(term.label_selector.as_ref(), &path.child("labelSelector"))
                .map_err(|errs| errs.to_string())?;
        let labels = pod_labels(owner);
        let merged = [(&term.match_label_keys, Operator::In), (&term.mismatch_label_keys, Operator::NotIn)];
        for (keys, operator) in merged {
            for key in keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    let requirement = Requirement::new(key.clone(), operator, vec![value.clone()])
                        .map_err(|e| format!("{}: {e}", path.child("matchLabelKeys")))?;
                    selector = selector.with(requirement);
                }
            }
        }
        let listed: BTreeSet<String> = term.namespaces.iter().flatten().cloned().collect();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([namespace(owner).to_string()])
        } else {
            listed
        };
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.iter().flatten().next().is_none()
                && s.match_expressions.iter().flatten().next().is_none()
        });
        Ok(AffinityTerm { selector, namespaces, all_namespaces, topology_key: term.topology_key.clone() })
    }

    /// Whether the term selects `pod` (kube-scheduler's `AffinityTerm.Matches`).
    pub(crate) fn matches(&self, pod: &Pod) -> bool {
        (self.all_namespaces || self.namespaces.contains(namespace(pod)))
            && self.selector.matches(pod_labels(pod))
    }
}

/// A preferred term and its weight.
#[derive(Clone, Debug)]
pub(crate) struct WeightedTerm {
    /// The term's weight (1 to 100).
    pub(crate) weight: i64,
    /// The term.
    pub(crate) term: AffinityTerm,
}

/// Every pod affinity and anti-affinity term of one pod.
#[derive(Clone, Debug, Default)]
pub(crate) struct PodTerms {
    pub(crate) required_affinity: Vec<AffinityTerm>,
    pub(crate) required_anti_affinity: Vec<AffinityTerm>,
    pub(crate) preferred_affinity: Vec<WeightedTerm>,
    pub(crate) preferred_anti_affinity: Vec<WeightedTerm>,
}

type Parsed<T> = Result<Vec<T>, String>;

impl PodTerms {
    /// Whether the pod has any pod affinity or anti-affinity term; if not, parsing can be skipped.
    pub(crate) fn any(pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }

    /// The terms of the pod being scheduled: any invalid term is an error.
    pub(crate) fn of(pod: &Pod) -> Result<PodTerms, String> {
        PodTerms::parse(pod, true)
    }

    /// The terms of a pod already placed: a kind with an invalid term is left out, as
    /// kube-scheduler leaves it out of its `PodInfo`.
    pub(crate) fn of_existing(pod: &Pod) -> PodTerms {
        PodTerms::parse(pod, false).unwrap_or_default()
    }

    fn parse(pod: &Pod, strict: bool) -> Result<PodTerms, String> {
        const REQ: &str = "requiredDuringSchedulingIgnoredDuringExecution";
        const PREF: &str = "preferredDuringSchedulingIgnoredDuringExecution";
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let base = FieldPath::new("spec").child("affinity");
        let (pa_path, paa_path) = (base.child("podAffinity"), base.child("podAntiAffinity"));
        Ok(PodTerms {
            required_affinity: keep(
                required(
                    pod,
                    pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()),
                    &pa_path.child(REQ),
                ),
                strict,
            )?,
            required_anti_affinity: keep(
                required(
                    pod,
                    paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()),
                    &paa_path.child(REQ),
                ),
                strict,
            )?,
            preferred_affinity: keep(
                preferred(
                    pod,
                    pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()),
                    &pa_path.child(PREF),
                ),
                strict,
            )?,
            preferred_anti_affinity: keep(
                preferred(
                    pod,
                    paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()),
                    &paa_path.child(PREF),
                ),
                strict,
            )?,
        })
    }

    /// Whether there are no terms at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }

    /// Whether `pod` matches every required affinity term (false if there are none):
    /// kube-scheduler's `podMatchesAllAffinityTerms`.
    pub(crate) fn all_affinity_terms_match(&self, pod: &Pod) -> bool {
        !self.required_affinity.is_empty() && self.required_affinity.iter().all(|t| t.matches(pod))
    }
}

/// An error if `strict`, else no terms.
fn keep<T>(parsed: Parsed<T>, strict: bool) -> Parsed<T> {
    match parsed {
        Err(e) if strict => Err(e),
        Err(_) => Ok(Vec::new()),
        ok => ok,
    }
}

fn required(pod: &Pod, terms: Option<&[PodAffinityTerm]>, path: &FieldPath) -> Parsed<AffinityTerm> {
    let terms = terms.unwrap_or(&[]);
    terms.iter().enumerate().map(|(i, t)| AffinityTerm::parse(pod, t, &path.index(i))).collect()
}

fn preferred(pod: &Pod, terms: Option<&[WeightedPodAffinityTerm]>, path: &FieldPath) -> Parsed<WeightedTerm> {
    let terms = terms.unwrap_or(&[]);
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let term =
                AffinityTerm::parse(pod, &t.pod_affinity_term, &path.index(i).child("podAffinityTerm"))?;
            Ok(WeightedTerm { weight: i64::from(t.weight), term })
        })
        .collect()
}

/// Sums per topology domain (key, then value): kube-scheduler's `topologyToMatchedTermCount`
/// and `scoreMap`. Lookups take `&str`, so filtering a node allocates nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `n` to the domain of `node_labels` for `key`; a node without the key is in no
    /// domain and adds nothing.
    pub(crate) fn add(&mut self, node_labels: &BTreeMap<String, String>, key: &str, n: i64) {
        let Some(value) = node_labels.get(key) else { return };
        let values = match self.0.get_mut(key) {
            Some(values) => values,
            None => self.0.entry(key.to_string()).or_default(),
        };
        match values.get_mut(value) {
            Some(sum) => *sum += n,
            None => {
                values.insert(value.clone(), n);
            }
        }
    }

    /// The sum for the domain `key=value`.
    pub(crate) fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|values| values.get(value)).copied().unwrap_or(0)
    }

    /// Whether no domain has a non-zero sum.
    pub(crate) fn all_zero(&self) -> bool {
        self.0.values().all(|values| values.values().all(|&n| n == 0))
    }

    /// The sum of the domains a node with `node_labels` is in, over every key.
    pub(crate) fn sum_for(&self, node_labels: &BTreeMap<String, String>) -> i64 {
        self.0.iter().filter_map(|(key, values)| node_labels.get(key).and_then(|v| values.get(v))).sum()
    }

    /// The domains with a non-zero sum, as `((key, value), sum)`.
    #[cfg(test)]
    pub(crate) fn non_zero(&self) -> BTreeMap<(String, String), i64> {
        self.0
            .iter()
            .flat_map(|(key, values)| values.iter().map(move |(v, &n)| ((key.clone(), v.clone()), n)))
            .filter(|&(_, n)| n != 0)
            .collect()
    }

    /// Whether a node with `node_labels` is in some domain with a positive sum.
    pub(crate) fn any_positive_for(&self, node_labels: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .any(|(key, values)| node_labels.get(key).and_then(|v| values.get(v)).is_some_and(|&n| n > 0))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiSelector;

    use super::*;

    fn pod_in(ns: &str, labels: &[(&str, &str)]) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.to_string());
        p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p
    }

    fn selector(labels: &[(&str, &str)]) -> Option<ApiSelector> {
        Some(ApiSelector {
            match_labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            match_expressions: None,
        })
    }

    fn term(
        sel: Option<ApiSelector>,
        namespaces: &[&str],
        ns_selector: Option<ApiSelector>,
    ) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: sel,
            namespaces: (!namespaces.is_empty()).then(|| namespaces.iter().map(|s| s.to_string()).collect()),
            namespace_selector: ns_selector,
            topology_key: "zone".into(),
            ..Default::default()
        }
    }

    #[test]
    fn namespaces_and_selectors() {
        let owner = pod_in("a", &[("app", "web"), ("rev", "1")]);
        let web_a = pod_in("a", &[("app", "web"), ("rev", "1")]);
        let web_b = pod_in("b", &[("app", "web"), ("rev", "2")]);
        let parse = |t: PodAffinityTerm| AffinityTerm::parse(&owner, &t, &FieldPath::root()).expect("valid");
        let web = || selector(&[("app", "web")]);
        // (case, term, matches web_a, matches web_b)
        let cases = [
            ("own namespace by default", term(web(), &[], None), true, false),
            ("listed namespaces", term(web(), &["b"], None), false, true),
            (
                "empty namespaceSelector: all namespaces",
                term(web(), &[], Some(ApiSelector::default())),
                true,
                true,
            ),
            (
                "other namespaceSelector: no namespace known",
                term(web(), &[], selector(&[("t", "x")])),
                false,
                false,
            ),
            ("namespaceSelector adds to the list", term(web(), &["b"], selector(&[("t", "x")])), false, true),
            (
                "absent label selector matches nothing",
                term(None, &[], Some(ApiSelector::default())),
                false,
                false,
            ),
            ("empty label selector matches all", term(selector(&[]), &["a", "b"], None), true, true),
        ];
        for (name, t, a, b) in cases {
            let t = parse(t);
            assert_eq!((t.matches(&web_a), t.matches(&web_b)), (a, b), "{name}");
        }
        let mut keyed = term(web(), &["a", "b"], None);
        keyed.match_label_keys = Some(vec!["rev".into(), "absent".into()]);
        let keyed = parse(keyed);
        assert!(keyed.matches(&web_a) && !keyed.matches(&web_b), "matchLabelKeys pins rev=1");
        let mut mismatch = term(web(), &["a", "b"], None);
        mismatch.mismatch_label_keys = Some(vec!["rev".into()]);
        let mismatch = parse(mismatch);
        assert!(!mismatch.matches(&web_a) && mismatch.matches(&web_b), "mismatchLabelKeys excludes rev=1");
    }

    #[test]
    fn invalid_terms() {
        let mut p = pod_in("a", &[]);
        let bad = ApiSelector {
            match_labels: None,
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "In".into(),
                    values: None,
                },
            ]),
        };
        p.spec = Some(Default::default());
        let affinity = p.spec.as_mut().expect("set").affinity.get_or_insert_with(Default::default);
        affinity.pod_anti_affinity = Some(k8s_openapi::api::core::v1::PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term(Some(bad), &[], None)]),
            ..Default::default()
        });
        let err = PodTerms::of(&p).expect_err("invalid");
        assert!(
            err.starts_with("spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].values"),
            "{err}"
        );
        assert!(PodTerms::of_existing(&p).required_anti_affinity.is_empty());
    }
}
