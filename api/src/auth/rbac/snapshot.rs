//! [`RbacSnapshot`]: the RBAC objects indexed for deciding, with aggregated ClusterRoles
//! resolved, and [`authorize`], Kubernetes' RBAC authorizer over it.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};

use flotilla_core::selector::LabelSelector;
use flotilla_core::validation::FieldPath;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::rules::{rule_allows, same_rule};
use crate::auth::authn::{SYSTEM_PRIVILEGED_GROUP, UserInfo, matches_service_account};
use crate::auth::authorizer::{Attributes, Decision};

/// A binding, cluster-wide (empty namespace) or in a namespace.
#[derive(Clone, Debug)]
struct Binding {
    name: String,
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    /// The first subject that is `user` (in the binding's namespace for ServiceAccounts
    /// without one).
    fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects.iter().find(|s| applies_to(user, s, &self.namespace))
    }

    /// `ClusterRoleBinding "x" of ClusterRole "y" to Group "z"`, Kubernetes' source text.
    fn describe(&self, subject: &Subject) -> String {
        let subject_text = match subject.kind.as_str() {
            "ServiceAccount" => {
                let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(&self.namespace);
                format!("{} {:?}", subject.kind, format!("{}/{ns}", subject.name))
            }
            _ => format!("{} {:?}", subject.kind, subject.name),
        };
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding {:?} of {} {:?} to {subject_text}",
                self.name, self.role_ref.kind, self.role_ref.name
            )
        } else {
            format!(
                "RoleBinding {:?} of {} {:?} to {subject_text}",
                format!("{}/{}", self.name, self.namespace),
                self.role_ref.kind,
                self.role_ref.name
            )
        }
    }
}

/// Whether binding subject `subject` is `user` (Kubernetes' `appliesToUser`).
fn applies_to(user: &UserInfo, subject: &Subject, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            // A RoleBinding's ServiceAccount without a namespace is in the binding's namespace;
            // a ClusterRoleBinding's matches nobody.
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            !ns.is_empty() && matches_service_account(ns, &subject.name, &user.name)
        }
        _ => false,
    }
}

/// The RBAC objects of a cluster, indexed for deciding.
#[derive(Clone, Debug, Default)]
pub struct RbacSnapshot {
    /// ClusterRole name -> rules (aggregated ones resolved).
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// (namespace, name) -> rules.
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// namespace -> its RoleBindings, by name.
    role_bindings: HashMap<String, Vec<Binding>>,
    /// ClusterRoleBindings, by name.
    cluster_role_bindings: Vec<Binding>,
}

impl RbacSnapshot {
    /// Indexes the given objects (owned or `Arc`s from a cache). Aggregated ClusterRoles get
    /// the rules of every ClusterRole their selectors select, as Kubernetes' aggregation
    /// controller would have written them.
    pub fn new<R, CR, RB, CRB>(
        roles: impl IntoIterator<Item = R>,
        cluster_roles: impl IntoIterator<Item = CR>,
        role_bindings: impl IntoIterator<Item = RB>,
        cluster_role_bindings: impl IntoIterator<Item = CRB>,
    ) -> Self
    where
        R: Borrow<Role>,
        CR: Borrow<ClusterRole>,
        RB: Borrow<RoleBinding>,
        CRB: Borrow<ClusterRoleBinding>,
    {
        let roles = roles
            .into_iter()
            .map(|r| {
                let r = r.borrow();
                let key = (
                    r.metadata.namespace.clone().unwrap_or_default(),
                    r.metadata.name.clone().unwrap_or_default(),
                );
                (key, r.rules.clone().unwrap_or_default())
            })
            .collect();
        let cluster_roles: Vec<CR> = cluster_roles.into_iter().collect();
        let cluster_roles =
            aggregate(&cluster_roles.iter().map(Borrow::borrow).collect::<Vec<&ClusterRole>>());

        let mut by_namespace: HashMap<String, Vec<Binding>> = HashMap::new();
        for rb in role_bindings {
            let rb = rb.borrow();
            let binding = Binding {
                name: rb.metadata.name.clone().unwrap_or_default(),
                namespace: rb.metadata.namespace.clone().unwrap_or_default(),
                role_ref: rb.role_ref.clone(),
                subjects: rb.subjects.clone().unwrap_or_default(),
            };
            by_namespace.entry(binding.namespace.clone()).or_default().push(binding);
        }
        for bindings in by_namespace.values_mut() {
            bindings.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let mut cluster_role_bindings: Vec<Binding> = cluster_role_bindings
            .into_iter()
            .map(|crb| {
                let crb = crb.borrow();
                Binding {
                    name: crb.metadata.name.clone().unwrap_or_default(),
                    namespace: String::new(),
                    role_ref: crb.role_ref.clone(),
                    subjects: crb.subjects.clone().unwrap_or_default(),
                }
            })
            .collect();
        cluster_role_bindings.sort_by(|a, b| a.name.cmp(&b.name));
        RbacSnapshot { cluster_roles, roles, role_bindings: by_namespace, cluster_role_bindings }
    }

    /// The rules of ClusterRole `name` (aggregated ones resolved).
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(Vec::as_slice)
    }

    /// The rules of the role a binding in `namespace` (empty: a ClusterRoleBinding) refers to.
    fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .map(Vec::as_slice)
                .ok_or_else(|| format!("role.rbac.authorization.k8s.io {:?} not found", role_ref.name)),
            "ClusterRole" => self.cluster_role_rules(&role_ref.name).ok_or_else(|| {
                format!("clusterrole.rbac.authorization.k8s.io {:?} not found", role_ref.name)
            }),
            other => Err(format!("unsupported role reference kind: {other:?}")),
        }
    }

    /// Calls `visit(source, rule)` for every rule granted to `user` in `namespace`
    /// (ClusterRoleBindings first, then the namespace's RoleBindings), until it returns
    /// `false`; unresolvable role references are collected in `errors`.
    fn visit_rules(
        &self,
        user: &UserInfo,
        namespace: &str,
        errors: &mut Vec<String>,
        visit: &mut dyn FnMut(&dyn Fn() -> String, &PolicyRule) -> bool,
    ) {
        let namespaced = if namespace.is_empty() { None } else { self.role_bindings.get(namespace) };
        let bindings = self.cluster_role_bindings.iter().chain(namespaced.into_iter().flatten());
        for binding in bindings {
            let Some(subject) = binding.subject_for(user) else { continue };
            match self.role_ref_rules(&binding.role_ref, &binding.namespace) {
                Err(e) => errors.push(e),
                Ok(rules) => {
                    for rule in rules {
                        if !visit(&|| binding.describe(subject), rule) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Every rule `user` has in `namespace` (cluster-wide ones included), and the errors met
    /// resolving them (for rules reviews).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, &mut errors, &mut |_, rule| {
            rules.push(rule.clone());
            true
        });
        (rules, errors)
    }
}

/// Kubernetes' RBAC decision: members of `system:masters` are allowed everything; others are
/// allowed what a rule of a role bound to them allows, cluster-wide by ClusterRoleBindings and
/// in the binding's namespace by RoleBindings.
pub fn authorize(snapshot: &RbacSnapshot, attrs: &Attributes) -> Decision {
    if attrs.user.in_group(SYSTEM_PRIVILEGED_GROUP) {
        return Decision::allow("");
    }
    let mut errors = Vec::new();
    let mut allowed_by = None;
    snapshot.visit_rules(&attrs.user, &attrs.namespace, &mut errors, &mut |source, rule| {
        if rule_allows(attrs, rule) {
            allowed_by = Some(source());
            return false;
        }
        true
    });
    match allowed_by {
        Some(source) => Decision::allow(format!("RBAC: allowed by {source}")),
        None if errors.is_empty() => Decision::deny(""),
        None => Decision::deny(format!("RBAC: {}", aggregate_errors(errors))),
    }
}

/// Kubernetes' aggregate error text: one message alone, several as `[a, b]`, repeats dropped.
fn aggregate_errors(errors: Vec<String>) -> String {
    let mut seen = HashSet::new();
    let unique: Vec<String> = errors.into_iter().filter(|e| seen.insert(e.clone())).collect();
    match unique.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The effective rules of every ClusterRole: its own, or for an aggregated one the rules of
/// the ClusterRoles its selectors select (in selector order, each selector's roles by name,
/// repeats dropped), replacing its own as the aggregation controller does.
fn aggregate(roles: &[&ClusterRole]) -> HashMap<String, Vec<PolicyRule>> {
    let by_name: BTreeMap<&str, &ClusterRole> =
        roles.iter().map(|r| (r.metadata.name.as_deref().unwrap_or(""), *r)).collect();
    let mut aggregator = Aggregator { by_name, done: HashMap::new(), visiting: HashSet::new() };
    let names: Vec<&str> = aggregator.by_name.keys().copied().collect();
    for name in names {
        aggregator.resolve(name);
    }
    aggregator.done
}

struct Aggregator<'a> {
    by_name: BTreeMap<&'a str, &'a ClusterRole>,
    done: HashMap<String, Vec<PolicyRule>>,
    /// Roles being resolved (a cycle takes their stored rules).
    visiting: HashSet<&'a str>,
}

impl<'a> Aggregator<'a> {
    fn resolve(&mut self, name: &'a str) -> Vec<PolicyRule> {
        if let Some(rules) = self.done.get(name) {
            return rules.clone();
        }
        let Some(role) = self.by_name.get(name).copied() else { return Vec::new() };
        let stored = role.rules.clone().unwrap_or_default();
        let Some(selectors) = selectors_of(role) else {
            self.done.insert(name.to_string(), stored.clone());
            return stored;
        };
        self.visiting.insert(name);
        let mut rules: Vec<PolicyRule> = Vec::new();
        for selector in &selectors {
            let selected: Vec<(&'a str, &'a ClusterRole)> = self
                .by_name
                .iter()
                .filter(|(other, r)| {
                    **other != name && selector.matches(&r.metadata.labels.clone().unwrap_or_default())
                })
                .map(|(n, r)| (*n, *r))
                .collect();
            for (other, other_role) in selected {
                let other_rules = if self.visiting.contains(other) {
                    other_role.rules.clone().unwrap_or_default()
                } else {
                    self.resolve(other)
                };
                for rule in other_rules {
                    if !rules.iter().any(|r| same_rule(r, &rule)) {
                        rules.push(rule);
                    }
                }
            }
        }
        self.visiting.remove(name);
        self.done.insert(name.to_string(), rules.clone());
        rules
    }
}

/// The selectors of an aggregated ClusterRole; `None` if it is not aggregated, or if a selector
/// is invalid (the aggregation controller then leaves the stored rules alone).
fn selectors_of(role: &ClusterRole) -> Option<Vec<LabelSelector>> {
    let rule = role.aggregation_rule.as_ref()?;
    let path = FieldPath::new("aggregationRule").child("clusterRoleSelectors");
    rule.cluster_role_selectors
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, s)| LabelSelector::from_k8s(s, &path.index(i)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as K8sSelector, ObjectMeta};

    use super::*;
    use crate::auth::rbac::rules::{rule, url_rule};

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.to_string()).filter(|n| !n.is_empty()),
            ..Default::default()
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject { kind: kind.into(), name: name.into(), namespace: ns.map(Into::into), ..Default::default() }
    }

    fn role_ref(kind: &str, name: &str) -> RoleRef {
        RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
    }

    fn role(ns: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
        Role { metadata: meta(ns, name), rules: Some(rules) }
    }

    fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
        let mut m = meta("", name);
        m.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        ClusterRole { metadata: m, rules: Some(rules), aggregation_rule: None }
    }

    fn aggregated(name: &str, labels: &[(&str, &str)], selects: &[(&str, &str)]) -> ClusterRole {
        let mut r = cluster_role(name, labels, vec![rule(&["get"], &[""], &["ignored"])]);
        r.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(
                selects
                    .iter()
                    .map(|(k, v)| K8sSelector {
                        match_labels: Some([(k.to_string(), v.to_string())].into_iter().collect()),
                        ..Default::default()
                    })
                    .collect(),
            ),
        });
        r
    }

    fn rb(ns: &str, name: &str, to: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
        RoleBinding { metadata: meta(ns, name), role_ref: to, subjects: Some(subjects) }
    }

    fn crb(name: &str, to: RoleRef, subjects: Vec<Subject>) -> ClusterRoleBinding {
        ClusterRoleBinding { metadata: meta("", name), role_ref: to, subjects: Some(subjects) }
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, groups.iter().copied())
    }

    fn sa(ns: &str, name: &str) -> UserInfo {
        UserInfo::new(format!("system:serviceaccount:{ns}:{name}"), ["system:serviceaccounts"])
    }

    fn snapshot() -> RbacSnapshot {
        let pod_reader = vec![rule(&["get", "list", "watch"], &[""], &["pods"])];
        RbacSnapshot::new(
            vec![
                role("dev", "pod-reader", pod_reader.clone()),
                role("dev", "deployer", vec![rule(&["*"], &["apps"], &["deployments", "deployments/scale"])]),
            ],
            vec![
                cluster_role("pod-reader", &[], pod_reader),
                cluster_role("health", &[], vec![url_rule(&["get"], &["/healthz", "/metrics*"])]),
                cluster_role("secrets", &[], vec![rule(&["get"], &[""], &["secrets"])]),
            ],
            vec![
                rb(
                    "dev",
                    "alice-reads",
                    role_ref("Role", "pod-reader"),
                    vec![subject("User", "alice", None)],
                ),
                rb("dev", "ops-deploy", role_ref("Role", "deployer"), vec![subject("Group", "ops", None)]),
                rb(
                    "dev",
                    "sa-reads",
                    role_ref("ClusterRole", "pod-reader"),
                    vec![subject("ServiceAccount", "ci", None)],
                ),
                rb(
                    "dev",
                    "other-sa",
                    role_ref("ClusterRole", "secrets"),
                    vec![subject("ServiceAccount", "bot", Some("tools"))],
                ),
                rb("dev", "dangling", role_ref("Role", "gone"), vec![subject("User", "carol", None)]),
                rb("dev", "dangling2", role_ref("ClusterRole", "gone"), vec![subject("User", "carol", None)]),
                rb(
                    "prod",
                    "bob-reads",
                    role_ref("ClusterRole", "pod-reader"),
                    vec![subject("User", "bob", None)],
                ),
            ],
            vec![
                crb(
                    "health",
                    role_ref("ClusterRole", "health"),
                    vec![subject("Group", "system:authenticated", None)],
                ),
                crb(
                    "auditors",
                    role_ref("ClusterRole", "pod-reader"),
                    vec![subject("Group", "auditors", None)],
                ),
                crb(
                    "sa-no-ns",
                    role_ref("ClusterRole", "secrets"),
                    vec![subject("ServiceAccount", "ci", None)],
                ),
                crb(
                    "sa-ns",
                    role_ref("ClusterRole", "secrets"),
                    vec![subject("ServiceAccount", "mon", Some("kube-system"))],
                ),
                crb("odd-kind", role_ref("ClusterRole", "secrets"), vec![subject("Robot", "r2", None)]),
            ],
        )
    }

    /// (what, user, verb, group, resource, namespace, name, allowed).
    type Case =
        (&'static str, UserInfo, &'static str, &'static str, &'static str, &'static str, &'static str, bool);

    #[test]
    fn bindings_and_subjects() {
        let s = snapshot();
        let alice = user("alice", &[]);
        let bob = user("bob", &[]);
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("role binding grants in its namespace", alice.clone(), "list", "", "pods", "dev", "", true),
            ("not in another namespace", alice.clone(), "list", "", "pods", "prod", "", false),
            ("not cluster-wide", alice.clone(), "list", "", "pods", "", "", false),
            ("not another verb", alice.clone(), "delete", "", "pods", "dev", "p", false),
            ("rolebinding to clusterrole: its namespace", bob.clone(), "get", "", "pods", "prod", "p", true),
            ("rolebinding to clusterrole: not elsewhere", bob.clone(), "get", "", "pods", "dev", "p", false),
            ("rolebinding to clusterrole: not cluster-wide", bob.clone(), "list", "", "pods", "", "", false),
            ("group subject", user("dan", &["ops"]), "patch", "apps", "deployments/scale", "dev", "web", true),
            ("group subject, other group", user("dan", &["dev"]), "patch", "apps", "deployments", "dev", "web", false),
            ("clusterrolebinding: any namespace", user("eve", &["auditors"]), "watch", "", "pods", "prod", "", true),
            ("clusterrolebinding: cluster-wide", user("eve", &["auditors"]), "list", "", "pods", "", "", true),
            ("sa without namespace in a rolebinding: the binding's", sa("dev", "ci"), "list", "", "pods", "dev", "", true),
            ("sa of another namespace", sa("prod", "ci"), "list", "", "pods", "dev", "", false),
            ("sa without namespace in a clusterrolebinding: nobody", sa("dev", "ci"), "get", "", "secrets", "prod", "s", false),
            ("sa with namespace in a rolebinding", sa("tools", "bot"), "get", "", "secrets", "dev", "s", true),
            ("sa with namespace in a clusterrolebinding", sa("kube-system", "mon"), "get", "", "secrets", "", "s", true),
            ("user named like a service account is one", user("system:serviceaccount:kube-system:mon", &[]), "get", "", "secrets", "a", "s", true),
            ("unknown subject kind", user("r2", &["Robot"]), "get", "", "secrets", "a", "s", false),
            ("masters", user("root", &["system:masters"]), "delete", "anything.io", "widgets", "", "w", true),
        ];
        for (what, u, verb, group, resource, ns, name, want) in cases {
            let d = authorize(&s, &Attributes::resource(u, verb, group, resource, ns, name));
            assert_eq!(d.is_allowed(), want, "{what}: {d:?}");
        }
    }

    #[test]
    fn reasons() {
        let s = snapshot();
        let cases: &[(Attributes, Decision)] = &[
            (
                Attributes::resource(user("alice", &[]), "list", "", "pods", "dev", ""),
                Decision::allow(
                    r#"RBAC: allowed by RoleBinding "alice-reads/dev" of Role "pod-reader" to User "alice""#,
                ),
            ),
            (
                Attributes::resource(sa("dev", "ci"), "list", "", "pods", "dev", ""),
                Decision::allow(
                    r#"RBAC: allowed by RoleBinding "sa-reads/dev" of ClusterRole "pod-reader" to ServiceAccount "ci/dev""#,
                ),
            ),
            (
                Attributes::non_resource(user("x", &["system:authenticated"]), "get", "/metrics/cadvisor"),
                Decision::allow(
                    r#"RBAC: allowed by ClusterRoleBinding "health" of ClusterRole "health" to Group "system:authenticated""#,
                ),
            ),
            (Attributes::resource(user("alice", &[]), "list", "", "pods", "prod", ""), Decision::deny("")),
            (
                Attributes::resource(user("carol", &[]), "list", "", "pods", "dev", ""),
                Decision::deny(
                    r#"RBAC: [role.rbac.authorization.k8s.io "gone" not found, clusterrole.rbac.authorization.k8s.io "gone" not found]"#,
                ),
            ),
            (
                Attributes::resource(user("root", &["system:masters"]), "get", "", "pods", "", ""),
                Decision::allow(""),
            ),
        ];
        for (attrs, want) in cases {
            assert_eq!(&authorize(&s, attrs), want, "{attrs:?}");
        }
        let single = RbacSnapshot::new(
            Vec::<Role>::new(),
            Vec::<ClusterRole>::new(),
            Vec::<RoleBinding>::new(),
            vec![
                crb("a", role_ref("Role", "r"), vec![subject("User", "u", None)]),
                crb("b", role_ref("Role", "r"), vec![subject("User", "u", None)]),
                crb("c", role_ref("Thing", "r"), vec![subject("User", "v", None)]),
            ],
        );
        let d = authorize(&single, &Attributes::resource(user("u", &[]), "get", "", "pods", "", ""));
        assert_eq!(
            d,
            Decision::deny(r#"RBAC: role.rbac.authorization.k8s.io "r" not found"#),
            "repeats dropped"
        );
        let d = authorize(&single, &Attributes::resource(user("v", &[]), "get", "", "pods", "", ""));
        assert_eq!(d, Decision::deny(r#"RBAC: unsupported role reference kind: "Thing""#));
    }

    #[test]
    fn aggregated_cluster_roles() {
        let to_admin = ("rbac.authorization.k8s.io/aggregate-to-admin", "true");
        let to_edit = ("rbac.authorization.k8s.io/aggregate-to-edit", "true");
        let to_view = ("rbac.authorization.k8s.io/aggregate-to-view", "true");
        let read = rule(&["get", "list"], &[""], &["pods"]);
        let write = rule(&["create"], &[""], &["pods"]);
        let rbac = rule(&["*"], &["rbac.authorization.k8s.io"], &["roles"]);
        let s = RbacSnapshot::new(
            Vec::<Role>::new(),
            vec![
                aggregated("admin", &[], &[to_admin]),
                aggregated("edit", &[to_admin], &[to_edit]),
                aggregated("view", &[to_edit], &[to_view]),
                cluster_role("agg-view", &[to_view], vec![read.clone()]),
                cluster_role("agg-edit", &[to_edit], vec![write.clone(), read.clone()]),
                cluster_role("agg-admin", &[to_admin], vec![rbac.clone()]),
                // Selects itself (skipped) and the other (a cycle that still ends).
                aggregated("loop-a", &[("loop", "x")], &[("loop", "x")]),
                aggregated("loop-b", &[("loop", "x")], &[("loop", "x")]),
                {
                    let mut bad = aggregated("bad-selector", &[], &[("", "x")]);
                    bad.rules = Some(vec![read.clone()]);
                    bad
                },
                {
                    let mut none = aggregated("selects-nothing", &[], &[]);
                    none.rules = Some(vec![read.clone()]);
                    none
                },
            ],
            Vec::<RoleBinding>::new(),
            vec![crb("e", role_ref("ClusterRole", "edit"), vec![subject("User", "ed", None)])],
        );
        assert_eq!(s.cluster_role_rules("view"), Some(&[read.clone()][..]));
        // edit: agg-edit's rules (repeats dropped), then view's (already present).
        assert_eq!(s.cluster_role_rules("edit"), Some(&[write.clone(), read.clone()][..]));
        // admin selects agg-admin and edit by name order.
        assert_eq!(s.cluster_role_rules("admin"), Some(&[rbac, write, read.clone()][..]));
        assert_eq!(s.cluster_role_rules("loop-a").map(<[PolicyRule]>::len), Some(1));
        assert_eq!(
            s.cluster_role_rules("bad-selector"),
            Some(&[read][..]),
            "invalid selector keeps stored rules"
        );
        assert_eq!(s.cluster_role_rules("selects-nothing"), Some(&[][..]));

        let ed = user("ed", &[]);
        assert!(authorize(&s, &Attributes::resource(ed.clone(), "create", "", "pods", "x", "")).is_allowed());
        assert!(!authorize(&s, &Attributes::resource(ed, "get", "", "ignored", "x", "a")).is_allowed());
    }

    #[test]
    fn rules_for_a_user() {
        let s = snapshot();
        let (rules, errors) = s.rules_for(&user("alice", &["system:authenticated"]), "dev");
        assert_eq!(rules.len(), 2, "health's rule and pod-reader's: {rules:?}");
        assert!(errors.is_empty());
        let (rules, errors) = s.rules_for(&user("carol", &[]), "dev");
        assert!(rules.is_empty());
        assert_eq!(errors.len(), 2);
    }
}
