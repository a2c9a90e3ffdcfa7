//! [`RbacAuthorizer`]: RBAC over reflector caches of the four RBAC kinds (and of bound pods,
//! for the node rules), deciding with [`decide`](super::decide).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_core::client::{Api, Cache, Client, ListOptions, WatcherEvent, reflector, watcher};
use flotilla_core::object::Resource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use parking_lot::RwLock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{RbacSnapshot, decide};
use crate::auth::authn::SYSTEM_PRIVILEGED_GROUP;
use crate::auth::authorizer::{Attributes, Authorizer, Decision};

/// The pods the node rules look up: only bound ones.
const BOUND_PODS: &str = "spec.nodeName!=";

struct Inner {
    roles: Cache<Role>,
    cluster_roles: Cache<ClusterRole>,
    role_bindings: Cache<RoleBinding>,
    cluster_role_bindings: Cache<ClusterRoleBinding>,
    pods: Cache<Pod>,
    /// Bumped after every RBAC event applied to a cache.
    generation: AtomicU64,
    /// The last snapshot built, with the generation read before building it.
    snapshot: RwLock<Option<(u64, Arc<RbacSnapshot>)>>,
    /// Woken after every event applied to any cache.
    changed: Notify,
    tasks: TaskTracker,
}

/// Authorizes against the cluster's current RBAC objects.
///
/// Decisions are made from memory: the caches are filled by watchers started with
/// [`start`](Self::start), and the [`RbacSnapshot`] is rebuilt lazily, on the first decision
/// after an RBAC object changed. Until every cache has its first full list, only
/// `system:masters` is allowed.
#[derive(Clone)]
pub struct RbacAuthorizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RbacAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacAuthorizer")
            .field("ready", &self.is_ready())
            .field("generation", &self.inner.generation.load(Ordering::Acquire))
            .finish()
    }
}

impl RbacAuthorizer {
    /// Starts following Roles, ClusterRoles, RoleBindings, ClusterRoleBindings and bound pods
    /// through `client`, until `shutdown` is cancelled (then [`stopped`](Self::stopped)
    /// returns). Must be called within a tokio runtime.
    pub fn start(client: Arc<dyn Client>, shutdown: CancellationToken) -> Self {
        let inner = Arc::new(Inner {
            roles: Cache::default(),
            cluster_roles: Cache::default(),
            role_bindings: Cache::default(),
            cluster_role_bindings: Cache::default(),
            pods: Cache::default(),
            generation: AtomicU64::new(0),
            snapshot: RwLock::new(None),
            changed: Notify::new(),
            tasks: TaskTracker::new(),
        });
        let all = ListOptions::default();
        follow(&inner, &client, &shutdown, inner.roles.clone(), all.clone(), true);
        follow(&inner, &client, &shutdown, inner.cluster_roles.clone(), all.clone(), true);
        follow(&inner, &client, &shutdown, inner.role_bindings.clone(), all.clone(), true);
        follow(&inner, &client, &shutdown, inner.cluster_role_bindings.clone(), all, true);
        let bound = ListOptions { field_selector: Some(BOUND_PODS.into()), ..Default::default() };
        follow(&inner, &client, &shutdown, inner.pods.clone(), bound, false);
        inner.tasks.close();
        RbacAuthorizer { inner }
    }

    /// Whether every cache has its first full list.
    pub fn is_ready(&self) -> bool {
        let i = &self.inner;
        i.roles.is_ready()
            && i.cluster_roles.is_ready()
            && i.role_bindings.is_ready()
            && i.cluster_role_bindings.is_ready()
            && i.pods.is_ready()
    }

    /// Waits until `condition` holds, checking it after every change to the caches. Wrap it in
    /// a timeout: it does not return if the condition never holds.
    pub async fn wait_until(&self, condition: impl Fn(&Self) -> bool) {
        loop {
            // Registered before the check, so a change in between still wakes us.
            let changed = self.inner.changed.notified();
            if condition(self) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until every cache has its first full list.
    pub async fn ready(&self) {
        self.wait_until(Self::is_ready).await
    }

    /// Waits until the watchers have stopped (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.inner.tasks.wait().await
    }

    /// The RBAC objects as currently cached, indexed.
    pub fn snapshot(&self) -> Arc<RbacSnapshot> {
        let i = &self.inner;
        // Read before listing: a change during the build makes the next call rebuild.
        let generation = i.generation.load(Ordering::Acquire);
        if let Some((built, snapshot)) = &*i.snapshot.read()
            && *built == generation
        {
            return snapshot.clone();
        }
        let fresh = Arc::new(RbacSnapshot::new(
            i.roles.list(),
            i.cluster_roles.list(),
            i.role_bindings.list(),
            i.cluster_role_bindings.list(),
        ));
        let mut slot = i.snapshot.write();
        if slot.as_ref().is_none_or(|(built, _)| *built < generation) {
            *slot = Some((generation, fresh.clone()));
        }
        fresh
    }

    /// The `spec.nodeName` of pod `namespace/name`, if it is cached (bound pods only).
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pod = self.inner.pods.get(&format!("{namespace}/{name}"))?;
        Some(pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default())
    }
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        if attrs.user.in_group(SYSTEM_PRIVILEGED_GROUP) {
            return Decision::allow("");
        }
        if !self.is_ready() {
            return Decision::deny("RBAC: the authorization caches are not synced yet");
        }
        decide(&self.snapshot(), attrs, |ns, name| self.pod_node(ns, name))
    }
}

/// Spawns the task that keeps `cache` current with objects of `K` matching `opts`.
fn follow<K: Resource>(
    inner: &Arc<Inner>,
    client: &Arc<dyn Client>,
    shutdown: &CancellationToken,
    cache: Cache<K>,
    opts: ListOptions,
    rbac: bool,
) {
    let (inner, shutdown) = (inner.clone(), shutdown.clone());
    let events = reflector(cache, watcher(Api::<K>::all(client.clone()), opts));
    inner.tasks.clone().spawn(async move {
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = events.next() => {
                    let Some(event) = event else { break };
                    if let WatcherEvent::Retrying(error) = &event {
                        tracing::debug!(kind = K::TYPE.kind, %error, "authorization cache watcher retrying");
                    }
                    if rbac {
                        inner.generation.fetch_add(1, Ordering::AcqRel);
                    }
                    inner.changed.notify_waiters();
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_core::client::{DeleteOptions, LocalClient};
    use flotilla_core::object::KindRegistry;
    use flotilla_core::registry::Registry;
    use flotilla_core::store::MemStore;
    use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec};
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::auth::authn::{NODES_GROUP, UserInfo};
    use crate::auth::rbac::rules::rule;

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() }
    }

    #[tokio::test]
    async fn decisions_follow_the_cluster() {
        let test = async {
            let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
            let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
            let ns = Namespace {
                metadata: ObjectMeta { name: Some("team".into()), ..Default::default() },
                ..Default::default()
            };
            Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");

            let shutdown = CancellationToken::new();
            let authz = RbacAuthorizer::start(client.clone(), shutdown.clone());
            authz.ready().await;
            let alice = UserInfo::new("alice", ["system:authenticated"]);
            let list_pods = Attributes::resource(alice, "list", "", "pods", "team", "");
            assert_eq!(authz.authorize(&list_pods), Decision::deny(""));

            let role = Role {
                metadata: meta("team", "reader"),
                rules: Some(vec![rule(&["list"], &[""], &["pods"])]),
            };
            Api::<Role>::namespaced(client.clone(), "team").create(&role).await.expect("role");
            let binding = RoleBinding {
                metadata: meta("team", "alice-reads"),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: "reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "User".into(),
                    name: "alice".into(),
                    ..Default::default()
                }]),
            };
            let bindings = Api::<RoleBinding>::namespaced(client.clone(), "team");
            bindings.create(&binding).await.expect("binding");
            authz.wait_until(|a| a.authorize(&list_pods).is_allowed()).await;
            assert_eq!(
                authz.authorize(&list_pods).reason(),
                r#"RBAC: allowed by RoleBinding "alice-reads/team" of Role "reader" to User "alice""#
            );

            bindings.delete("alice-reads", &DeleteOptions::default()).await.expect("deleted");
            authz.wait_until(|a| !a.authorize(&list_pods).is_allowed()).await;

            // The node rules see pods once they are bound.
            let pod = Pod {
                metadata: meta("team", "web"),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        image: Some("app:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            };
            let pods = Api::<Pod>::namespaced(client.clone(), "team");
            pods.create(&pod).await.expect("pod");
            let node = |n: &str| UserInfo::new(format!("system:node:{n}"), [NODES_GROUP]);
            let status = |n: &str| Attributes::resource(node(n), "patch", "", "pods/status", "team", "web");
            assert!(!authz.authorize(&status("n1")).is_allowed(), "an unbound pod is nobody's");
            pods.bind("web", "n1").await.expect("bound");
            authz.wait_until(|a| a.authorize(&status("n1")).is_allowed()).await;
            assert!(!authz.authorize(&status("n2")).is_allowed());

            shutdown.cancel();
            authz.stopped().await;
        };
        tokio::time::timeout(Duration::from_secs(60), test)
            .await
            .expect("the authorizer followed the changes in time (a watcher or its notification stalled?)");
    }
}
