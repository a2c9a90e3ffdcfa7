//! A user-defined kind with its own controller, composed with Flotilla's runtime.
//!
//! `Greeting` (greetings.example.com/v1) asks for a ConfigMap `<name>-greeting` holding its
//! message. The controller creates or updates that ConfigMap (owned by the Greeting, so the
//! garbage collector removes it with its owner); editing or deleting the ConfigMap by hand
//! triggers a reconcile that puts it back. Run it with `cargo run -p flotilla-examples --example greeter`.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use flotilla_core::client::{Api, Cache, Client, Error as ClientError, LocalClient};
use flotilla_core::controller::{Action, Controller, Informers, ObjectKey, Reconciler};
use flotilla_core::controllers::util::controller_reference;
use flotilla_core::object::{Kind, KindRegistry, Resource, ResourceType};
use flotilla_core::registry::Registry;
use flotilla_core::store::MemStore;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The user kind: what to say.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Greeting {
    #[serde(default, rename = "apiVersion")]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: GreetingSpec,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GreetingSpec {
    message: String,
}

impl Resource for Greeting {
    const TYPE: ResourceType = ResourceType {
        group: "greetings.example.com",
        version: "v1",
        kind: "Greeting",
        plural: "greetings",
        singular: "greeting",
        namespaced: true,
        short_names: &["gr"],
        has_status: false,
    };
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Kind for Greeting {}

/// Makes each Greeting's ConfigMap match it.
struct Greeter {
    client: Arc<dyn Client>,
    greetings: Cache<Greeting>,
}

#[async_trait]
impl Reconciler for Greeter {
    type Error = ClientError;

    async fn reconcile(&self, key: &ObjectKey) -> Result<Action, ClientError> {
        // Gone: its ConfigMap is owned by it, so the garbage collector removes it.
        let Some(g) = self.greetings.get(&key.cache_key()) else { return Ok(Action::Done) };
        let ns = key.namespace.as_deref().unwrap_or("default");
        let maps = Api::<ConfigMap>::namespaced(self.client.clone(), ns);
        let name = format!("{}-greeting", key.name);
        let data = BTreeMap::from([("message".to_string(), g.spec.message.clone())]);
        match maps.get_opt(&name).await? {
            Some(cm) if cm.data.as_ref() == Some(&data) => {}
            Some(mut cm) => {
                cm.data = Some(data);
                maps.replace(&name, &cm).await?;
            }
            None => {
                let mut metadata = meta(&name);
                metadata.owner_references = Some(vec![controller_reference(g.as_ref())]);
                maps.create(&ConfigMap { metadata, data: Some(data), ..Default::default() }).await?;
            }
        }
        Ok(Action::Done)
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), ..Default::default() }
}

/// Runs the controller on an in-memory store, asks for one greeting and returns the message
/// its ConfigMap ends up holding.
async fn demo(message: &str) -> anyhow::Result<String> {
    let mut kinds = KindRegistry::builtin();
    kinds.register::<Greeting>()?;
    let registry = Registry::new(Arc::new(MemStore::new()), kinds);
    let client: Arc<dyn Client> = Arc::new(LocalClient::new(registry));
    let ns = Namespace { metadata: meta("default"), ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&ns).await?;

    let informers = Informers::new(client.clone());
    let greeter = Greeter { client: client.clone(), greetings: informers.cache::<Greeting>() };
    let controller = Controller::new("greeter", informers.informer::<Greeting>(), greeter)
        .owns(informers.informer::<ConfigMap>());
    let shutdown = CancellationToken::new();
    informers.start(shutdown.clone());
    let (_leader, is_leader) = watch::channel(true);
    let running = tokio::spawn(controller.run(is_leader, shutdown.clone()));

    let spec = GreetingSpec { message: message.into() };
    let hello = Greeting { metadata: meta("hello"), spec, ..Default::default() };
    Api::<Greeting>::namespaced(client.clone(), "default").create(&hello).await?;
    let maps = Api::<ConfigMap>::namespaced(client, "default");
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Some(cm) = maps.get_opt("hello-greeting").await? {
                return anyhow::Ok(cm.data.unwrap_or_default().remove("message").unwrap_or_default());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await??;
    shutdown.cancel();
    running.await?;
    Ok(got)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("hello-greeting says: {}", demo("hello, world").await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_greeting_controller_writes_the_config_map() {
        assert_eq!(super::demo("ahoy").await.expect("demo runs"), "ahoy");
    }
}
