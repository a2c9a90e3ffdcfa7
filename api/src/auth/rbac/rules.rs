//! Whether one `PolicyRule` covers a request, with Kubernetes' matching rules.

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::auth::authorizer::Attributes;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
const ALL: &str = "*";

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

/// Whether the rule's verbs include `verb` (or `*`).
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// Whether the rule's apiGroups include `group` (or `*`).
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups).iter().any(|g| g == ALL || g == group)
}

/// Whether the rule's resources include `resource/subresource` (`combined`) exactly, `*`, or
/// `*/<subresource>` for a request with that subresource. `pods` does not cover `pods/status`.
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/").is_some_and(|s| s == subresource))
    })
}

/// Whether the rule has no resourceNames, or names `name`. A request without a name (list,
/// watch, create, deletecollection) never matches a rule with resourceNames.
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Whether the rule's nonResourceURLs include `path` exactly, `*`, or a prefix ending in `*`.
pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    list(&rule.non_resource_urls)
        .iter()
        .any(|u| u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*'))))
}

/// Whether `rule` allows the request (Kubernetes' `RuleAllows`).
pub fn rule_allows(attrs: &Attributes, rule: &PolicyRule) -> bool {
    if attrs.resource_request {
        let combined = if attrs.subresource.is_empty() {
            attrs.resource.clone()
        } else {
            format!("{}/{}", attrs.resource, attrs.subresource)
        };
        verb_matches(rule, &attrs.verb)
            && api_group_matches(rule, &attrs.api_group)
            && resource_matches(rule, &combined, &attrs.subresource)
            && resource_name_matches(rule, &attrs.name)
    } else {
        verb_matches(rule, &attrs.verb) && non_resource_url_matches(rule, &attrs.path)
    }
}

/// Whether two rules are equal, an absent list counting as an empty one (as Kubernetes'
/// semantic equality does).
pub(crate) fn same_rule(a: &PolicyRule, b: &PolicyRule) -> bool {
    a.verbs == b.verbs
        && list(&a.api_groups) == list(&b.api_groups)
        && list(&a.resources) == list(&b.resources)
        && list(&a.resource_names) == list(&b.resource_names)
        && list(&a.non_resource_urls) == list(&b.non_resource_urls)
}

/// A rule builder for policies and tests: `verbs` on `resources` of `groups`.
pub(crate) fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        ..Default::default()
    }
}

/// A non-resource rule builder: `verbs` on `urls`.
pub(crate) fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        non_resource_urls: Some(urls.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::UserInfo;

    fn named(mut r: PolicyRule, names: &[&str]) -> PolicyRule {
        r.resource_names = Some(names.iter().map(|s| s.to_string()).collect());
        r
    }

    fn req(verb: &str, group: &str, resource: &str, name: &str) -> Attributes {
        Attributes::resource(UserInfo::new("u", ["g"]), verb, group, resource, "ns", name)
    }

    /// (rule, request, allowed), mostly from Kubernetes' `TestRuleMatches`.
    #[test]
    fn resource_rules() {
        let pods_get = rule(&["get"], &[""], &["pods"]);
        let cases: Vec<(&str, PolicyRule, Attributes, bool)> = vec![
            ("exact", pods_get.clone(), req("get", "", "pods", "p"), true),
            ("other verb", pods_get.clone(), req("list", "", "pods", ""), false),
            ("other group", pods_get.clone(), req("get", "apps", "pods", "p"), false),
            ("other resource", pods_get.clone(), req("get", "", "services", "s"), false),
            ("verb star", rule(&["*"], &[""], &["pods"]), req("deletecollection", "", "pods", ""), true),
            ("group star", rule(&["get"], &["*"], &["pods"]), req("get", "custom.io", "pods", "p"), true),
            ("group star core", rule(&["get"], &["*"], &["pods"]), req("get", "", "pods", "p"), true),
            ("no groups", rule(&["get"], &[], &["pods"]), req("get", "", "pods", "p"), false),
            ("resource star", rule(&["get"], &[""], &["*"]), req("get", "", "pods/status", "p"), true),
            // subresources
            ("pods does not cover pods/status", pods_get.clone(), req("get", "", "pods/status", "p"), false),
            (
                "pods/status",
                rule(&["get"], &[""], &["pods/status"]),
                req("get", "", "pods/status", "p"),
                true,
            ),
            (
                "pods/status is not pods",
                rule(&["get"], &[""], &["pods/status"]),
                req("get", "", "pods", "p"),
                false,
            ),
            (
                "star slash sub",
                rule(&["get"], &["apps"], &["*/scale"]),
                req("get", "apps", "deployments/scale", "d"),
                true,
            ),
            (
                "star slash other sub",
                rule(&["get"], &["apps"], &["*/scale"]),
                req("get", "apps", "deployments/status", "d"),
                false,
            ),
            (
                "star slash without sub",
                rule(&["get"], &["apps"], &["*/scale"]),
                req("get", "apps", "deployments", "d"),
                false,
            ),
            (
                "star slash longer sub",
                rule(&["get"], &[""], &["*/log"]),
                req("get", "", "pods/logs", "d"),
                false,
            ),
            (
                "resource slash star is literal",
                rule(&["get"], &[""], &["pods/*"]),
                req("get", "", "pods/log", "p"),
                false,
            ),
            // resourceNames
            ("named get", named(pods_get.clone(), &["p"]), req("get", "", "pods", "p"), true),
            ("named get other", named(pods_get.clone(), &["p"]), req("get", "", "pods", "q"), false),
            (
                "named list without name",
                named(rule(&["list"], &[""], &["pods"]), &["p"]),
                req("list", "", "pods", ""),
                false,
            ),
            (
                "named list with selected name",
                named(rule(&["list"], &[""], &["pods"]), &["p"]),
                req("list", "", "pods", "p"),
                true,
            ),
            (
                "named watch",
                named(rule(&["watch"], &[""], &["pods"]), &["p"]),
                req("watch", "", "pods", ""),
                false,
            ),
            (
                "named create",
                named(rule(&["create"], &[""], &["pods"]), &["p"]),
                req("create", "", "pods", ""),
                false,
            ),
            (
                "named deletecollection",
                named(rule(&["deletecollection"], &[""], &["pods"]), &["p"]),
                req("deletecollection", "", "pods", ""),
                false,
            ),
            ("empty names list", named(pods_get.clone(), &[]), req("get", "", "pods", "any"), true),
            (
                "url rule never matches resources",
                url_rule(&["get"], &["*"]),
                req("get", "", "pods", "p"),
                false,
            ),
        ];
        for (what, rule, attrs, want) in cases {
            assert_eq!(rule_allows(&attrs, &rule), want, "{what}");
        }
    }

    #[test]
    fn non_resource_rules() {
        let user = UserInfo::new("u", ["g"]);
        let cases: &[(&[&str], &str, &str, bool)] = &[
            (&["/healthz"], "get", "/healthz", true),
            (&["/healthz"], "get", "/healthz/etcd", false),
            (&["/healthz"], "post", "/healthz", false),
            (&["/healthz*"], "get", "/healthz/etcd", true),
            (&["/healthz/*"], "get", "/healthz", false),
            (&["/healthz/*"], "get", "/healthz/", true),
            (&["/apis/*"], "get", "/apis/apps/v1", true),
            (&["/api", "/api/*"], "get", "/api", true),
            (&["*"], "get", "/anything", true),
            (&["/version"], "get", "/version/", false),
        ];
        for (urls, verb, path, want) in cases {
            let rule = url_rule(&["get"], urls);
            let attrs = Attributes::non_resource(user.clone(), verb, path);
            assert_eq!(rule_allows(&attrs, &rule), *want, "{urls:?} {verb} {path}");
        }
        let resource_rule = rule(&["*"], &["*"], &["*"]);
        assert!(!rule_allows(&Attributes::non_resource(user, "get", "/healthz"), &resource_rule));
    }

    #[test]
    fn semantic_equality() {
        let a = rule(&["get"], &[""], &["pods"]);
        let mut b = a.clone();
        b.resource_names = Some(Vec::new());
        assert!(same_rule(&a, &b));
        b.resource_names = Some(vec!["x".into()]);
        assert!(!same_rule(&a, &b));
    }
}
