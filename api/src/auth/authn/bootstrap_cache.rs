//! [`BootstrapTokens`]: the cluster's bootstrap token Secrets, followed by a watcher and kept
//! in memory, so the authenticator checks a token without I/O.

use std::sync::Arc;

use flotilla_core::client::{Api, Cache, Client, ListOptions, WatcherEvent, reflector, watcher};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::UserInfo;
use super::bootstrap::{
    BOOTSTRAP_TOKEN_NAMESPACE, BOOTSTRAP_TOKEN_SECRET_TYPE, BootstrapToken, TokenError, TokenSecret,
};

/// The bootstrap token Secrets of a cluster, kept current by a watcher.
#[derive(Clone)]
pub struct BootstrapTokens {
    cache: Cache<Secret>,
    changed: Arc<Notify>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for BootstrapTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapTokens").field("ready", &self.cache.is_ready()).finish_non_exhaustive()
    }
}

impl BootstrapTokens {
    /// Starts following the Secrets of type `bootstrap.kubernetes.io/token` in `kube-system`
    /// through `client` until `shutdown` is cancelled. Must be called within a tokio runtime.
    pub fn start(client: Arc<dyn Client>, shutdown: CancellationToken) -> Self {
        let cache = Cache::default();
        let changed = Arc::new(Notify::new());
        let tasks = TaskTracker::new();
        let opts = ListOptions {
            field_selector: Some(format!("type={BOOTSTRAP_TOKEN_SECRET_TYPE}")),
            ..Default::default()
        };
        let api = Api::<Secret>::namespaced(client, BOOTSTRAP_TOKEN_NAMESPACE);
        let events = reflector(cache.clone(), watcher(api, opts));
        let notify = changed.clone();
        tasks.spawn(async move {
            let mut events = std::pin::pin!(events);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    event = events.next() => {
                        let Some(event) = event else { break };
                        if let WatcherEvent::Retrying(error) = &event {
                            tracing::debug!(%error, "bootstrap token watcher retrying");
                        }
                        notify.notify_waiters();
                    }
                }
            }
        });
        tasks.close();
        BootstrapTokens { cache, changed, tasks }
    }

    /// Whether the first full list has arrived.
    pub fn is_ready(&self) -> bool {
        self.cache.is_ready()
    }

    /// Waits until `condition` holds, checking it after every change. Wrap it in a timeout.
    pub async fn wait_until(&self, condition: impl Fn(&Self) -> bool) {
        loop {
            let changed = self.changed.notified();
            if condition(self) {
                return;
            }
            changed.await;
        }
    }

    /// Waits until the watcher has stopped (after the shutdown token was cancelled).
    pub async fn stopped(&self) {
        self.tasks.wait().await
    }

    /// Whether a Secret holds token id `id` (valid or not).
    pub fn contains(&self, id: &str) -> bool {
        self.cache.get(&secret_key(id)).is_some()
    }

    /// The names of the token Secrets expired at `now` (kube-controller-manager's
    /// `tokencleaner` deletes them; a Secret whose fields do not parse is left alone).
    pub fn expired(&self, now: Timestamp) -> Vec<String> {
        self.cache
            .list()
            .iter()
            .filter(|s| TokenSecret::from_secret(s).is_ok_and(|t| t.is_expired(now)))
            .filter_map(|s| s.metadata.name.clone())
            .collect()
    }

    /// Who `token` identifies at `now`: `None` if it is not a bootstrap token or no Secret
    /// holds its id (other authenticators may know it), `Some(Err)` if the Secret refuses it
    /// (wrong secret, expired, not for authentication, or a malformed Secret).
    pub fn authenticate(&self, token: &str, now: Timestamp) -> Option<Result<UserInfo, TokenError>> {
        let presented = BootstrapToken::parse(token).ok()?;
        let secret = self.cache.get(&secret_key(&presented.id))?;
        Some(TokenSecret::from_secret(&secret).and_then(|s| s.authenticate(&presented, now)))
    }
}

/// The cache key of token `id`'s Secret.
fn secret_key(id: &str) -> String {
    format!("{BOOTSTRAP_TOKEN_NAMESPACE}/{}{id}", super::bootstrap::BOOTSTRAP_TOKEN_SECRET_PREFIX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flotilla_core::client::LocalClient;
    use flotilla_core::object::KindRegistry;
    use flotilla_core::registry::Registry;
    use flotilla_core::store::MemStore;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    #[tokio::test]
    async fn follows_token_secrets() {
        let test = async {
            let registry = Registry::new(Arc::new(MemStore::new()), KindRegistry::builtin());
            let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
            let ns = Namespace {
                metadata: ObjectMeta { name: Some("kube-system".into()), ..Default::default() },
                ..Default::default()
            };
            Api::<Namespace>::all(client.clone()).create(&ns).await.expect("namespace");
            let shutdown = CancellationToken::new();
            let tokens = BootstrapTokens::start(client.clone(), shutdown.clone());
            tokens.wait_until(BootstrapTokens::is_ready).await;
            let token = BootstrapToken::generate();
            let now: Timestamp = "2030-01-01T00:00:00Z".parse().expect("time");
            assert!(tokens.authenticate(&token.to_string(), now).is_none(), "unknown id");
            assert!(tokens.authenticate("not-a-token", now).is_none());

            let expiry = "2030-01-01T01:00:00Z".parse().expect("time");
            let secret = TokenSecret::new(token.clone(), Some(expiry), vec![]).to_secret();
            let secrets = Api::<Secret>::namespaced(client.clone(), "kube-system");
            secrets.create(&secret).await.expect("secret");
            tokens.wait_until(|t| t.contains(&token.id)).await;
            let user = tokens.authenticate(&token.to_string(), now).expect("known").expect("valid");
            assert_eq!(user.name, format!("system:bootstrap:{}", token.id));
            let later: Timestamp = "2030-01-01T02:00:00Z".parse().expect("time");
            let err = tokens.authenticate(&token.to_string(), later).expect("known").expect_err("expired");
            assert!(matches!(err, TokenError::Expired { .. }), "{err}");
            assert!(tokens.expired(now).is_empty());
            assert_eq!(tokens.expired(later), vec![token.secret_name()]);

            shutdown.cancel();
            tokens.stopped().await;
        };
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .expect("the token cache followed the Secret in time (watcher stalled?)");
    }
}
