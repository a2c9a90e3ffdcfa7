//! [`BoundObjects`]: a ServiceAccount token is valid only while the objects it names exist
//! with the uids it names (its ServiceAccount, and the pod, Secret or node it is bound to), as
//! kube-apiserver's ServiceAccount token validator requires. Deleting the ServiceAccount or
//! the pod revokes its tokens; so does deleting and creating it again under the same name
//! (a new uid).
//!
//! The uids of those kinds are followed by watchers and kept in memory (names and uids only),
//! so a valid token costs no I/O. Anything else (an object the watchers have not seen, a uid
//! that differs, a watcher not ready yet) is read from the store before the token is refused,
//! since a watcher may lag a creation; so a revoked token costs a read per request.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_core::client::{Api, Client, Error as ClientError, ListOptions, WatcherEvent, watcher};
use flotilla_core::object::Resource;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{BoundRefs, ObjectRef};

/// Uids by (namespace, name) of one kind, as a watcher last saw them.
#[derive(Debug, Default)]
struct Uids {
    /// Whether the first full list has arrived.
    ready: bool,
    by_name: HashMap<(String, String), String>,
    /// The map being rebuilt by a (re)list.
    listing: Option<HashMap<(String, String), String>>,
}

type Shared = Arc<RwLock<Uids>>;

/// The objects ServiceAccount tokens name, followed to revoke the tokens of deleted ones.
#[derive(Clone)]
pub struct BoundObjects {
    client: Arc<dyn Client>,
    service_accounts: Shared,
    pods: Shared,
    secrets: Shared,
    nodes: Shared,
    tasks: TaskTracker,
}

impl std::fmt::Debug for BoundObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundObjects").field("ready", &self.is_ready()).finish_non_exhaustive()
    }
}

fn key(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Follows the objects of kind `K` into `uids` until `shutdown` is cancelled.
fn follow<K>(client: Arc<dyn Client>, uids: Shared, shutdown: CancellationToken, tasks: &TaskTracker)
where
    K: Resource,
{
    let events = watcher(Api::<K>::all(client), ListOptions::default());
    tasks.spawn(async move {
        let mut events = std::pin::pin!(events);
        loop {
            let event = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                event = events.next() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            let mut u = uids.write();
            match event {
                WatcherEvent::Init => u.listing = Some(HashMap::new()),
                WatcherEvent::InitApply(obj) => {
                    let meta = obj.meta();
                    let uid = meta.uid.clone().unwrap_or_default();
                    u.listing.get_or_insert_with(HashMap::new).insert(key(meta), uid);
                }
                WatcherEvent::InitDone => {
                    u.by_name = u.listing.take().unwrap_or_default();
                    u.ready = true;
                }
                WatcherEvent::Apply(obj) => {
                    let meta = obj.meta();
                    let uid = meta.uid.clone().unwrap_or_default();
                    u.by_name.insert(key(meta), uid);
                }
                WatcherEvent::Delete(obj) => {
                    u.by_name.remove(&key(obj.meta()));
                }
                WatcherEvent::Retrying(error) => {
                    tracing::debug!(%error, kind = K::TYPE.kind, "bound object watcher retrying");
                }
            }
        }
    });
}

impl BoundObjects {
    /// Starts following ServiceAccounts, pods, Secrets and nodes through `client` until
    /// `shutdown` is cancelled. Must be called within a tokio runtime.
    pub fn start(client: Arc<dyn Client>, shutdown: CancellationToken) -> Self {
        let objects = Self::uncached(client);
        let (client, tasks) = (&objects.client, &objects.tasks);
        follow::<ServiceAccount>(client.clone(), objects.service_accounts.clone(), shutdown.clone(), tasks);
        follow::<Pod>(client.clone(), objects.pods.clone(), shutdown.clone(), tasks);
        follow::<Secret>(client.clone(), objects.secrets.clone(), shutdown.clone(), tasks);
        follow::<Node>(client.clone(), objects.nodes.clone(), shutdown, tasks);
        tasks.close();
        objects
    }

    /// Without watchers: every check reads the store.
    pub fn uncached(client: Arc<dyn Client>) -> Self {
        BoundObjects {
            client,
            service_accounts: Shared::default(),
            pods: Shared::default(),
            secrets: Shared::default(),
            nodes: Shared::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Whether every watcher has its first full list.
    pub fn is_ready(&self) -> bool {
        [&self.service_accounts, &self.pods, &self.secrets, &self.nodes].iter().all(|u| u.read().ready)
    }

    /// Waits until the watchers have stopped (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.tasks.wait().await
    }

    /// Whether the objects `bound` names all exist with the uids it names; if not, why not.
    pub async fn check(&self, bound: &BoundRefs) -> Result<(), String> {
        let ns = Some(bound.namespace.as_str());
        self.exists::<ServiceAccount>(&self.service_accounts, ns, &bound.service_account).await?;
        if let Some(pod) = &bound.pod {
            self.exists::<Pod>(&self.pods, ns, pod).await?;
        }
        if let Some(secret) = &bound.secret {
            self.exists::<Secret>(&self.secrets, ns, secret).await?;
        }
        if let Some(node) = &bound.node {
            self.exists::<Node>(&self.nodes, None, node).await?;
        }
        Ok(())
    }

    /// Whether the `K` named `object` exists with its uid: from the watcher's map when it
    /// says so, otherwise from the store.
    async fn exists<K>(
        &self,
        uids: &Shared,
        namespace: Option<&str>,
        object: &ObjectRef,
    ) -> Result<(), String>
    where
        K: Resource,
    {
        let kind = K::TYPE.kind;
        let what = match namespace {
            Some(ns) => format!("{kind} {ns}/{}", object.name),
            None => format!("{kind} {}", object.name),
        };
        if object.name.is_empty() {
            return Err(format!("the token names a {kind} without a name"));
        }
        let cached = uids
            .read()
            .by_name
            .get(&(namespace.unwrap_or_default().to_string(), object.name.clone()))
            .cloned();
        let matches = |uid: &str| object.uid.is_empty() || uid == object.uid;
        if cached.as_deref().is_some_and(matches) {
            return Ok(());
        }
        let api = match namespace {
            Some(ns) => Api::<K>::namespaced(self.client.clone(), ns),
            None => Api::<K>::all(self.client.clone()),
        };
        match api.get(&object.name).await {
            Ok(found) => {
                let uid = found.meta().uid.clone().unwrap_or_default();
                if matches(&uid) {
                    Ok(())
                } else {
                    Err(format!("{what} is another object now (uid {uid}, the token names {})", object.uid))
                }
            }
            Err(ClientError::NotFound { .. }) => Err(format!("{what} no longer exists")),
            Err(e) => Err(format!("cannot check that {what} exists: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_core::MemStore;
    use flotilla_core::client::LocalClient;
    use flotilla_core::object::KindRegistry;
    use flotilla_core::registry::Registry;

    use super::*;

    fn refs(sa_uid: &str, pod: Option<(&str, &str)>) -> BoundRefs {
        BoundRefs {
            namespace: "default".into(),
            service_account: ObjectRef { name: "builder".into(), uid: sa_uid.into() },
            pod: pod.map(|(name, uid)| ObjectRef { name: name.into(), uid: uid.into() }),
            ..BoundRefs::default()
        }
    }

    #[tokio::test]
    async fn a_token_is_valid_while_what_it_names_exists_with_its_uid() -> anyhow::Result<()> {
        let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
        let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
        let mut ns = k8s_openapi::api::core::v1::Namespace::default();
        ns.metadata.name = Some("default".into());
        Api::all(client.clone()).create(&ns).await?;
        let sas = Api::<ServiceAccount>::namespaced(client.clone(), "default");
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some("builder".into());
        let uid = sas.create(&sa).await?.metadata.uid.unwrap_or_default();

        let stop = CancellationToken::new();
        let watched = BoundObjects::start(client.clone(), stop.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !watched.is_ready() {
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "the watchers never listed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Without watchers the store answers; with them, the same answers.
        for objects in [BoundObjects::uncached(client.clone()), watched.clone()] {
            assert_eq!(objects.check(&refs(&uid, None)).await, Ok(()));
            let other = objects.check(&refs("another-uid", None)).await.expect_err("another uid");
            assert!(other.contains("ServiceAccount default/builder is another object now"), "{other}");
            let gone = objects.check(&refs(&uid, Some(("web", "pod-uid")))).await.expect_err("no pod");
            assert_eq!(gone, "Pod default/web no longer exists");
        }

        sas.delete("builder", &Default::default()).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match watched.check(&refs(&uid, None)).await {
                Err(e) => {
                    assert_eq!(e, "ServiceAccount default/builder no longer exists");
                    break;
                }
                Ok(()) => {
                    anyhow::ensure!(tokio::time::Instant::now() < deadline, "the deletion never counted")
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        watched.stopped().await;
        Ok(())
    }
}
