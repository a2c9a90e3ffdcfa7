//! The PersistentVolume controllers on the runtime under a paused clock: static volumes bound
//! to matching claims (and not to claims they do not fit), pre-binding by `claimRef` and by
//! `volumeName`, released volumes retained, deleted or failed, local-path provisioning
//! (including the default class), protection finalizers, and a conflict in the middle of a
//! bind converging.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_core::client::{
    Api, Client, DeleteOptions, Deleted, GetOptions, ListOptions, ObjectList, Result as ClientResult,
    Subresource, WatchStream, WriteOptions, Written,
};
use flotilla_core::controller::Informers;
use flotilla_core::controller::events::Recorder;
use flotilla_core::controller::testing::TestKit;
use flotilla_core::controllers::volume::{
    ANN_BIND_COMPLETED, ANN_PROVISIONED_BY, ANN_STORAGE_PROVISIONER, EVENT_COMPONENT, LOCAL_PATH_PROVISIONER,
    PV_PROTECTION_FINALIZER, PVC_PROTECTION_FINALIZER, claim_controller, volume_controller,
};
use flotilla_core::object::{DynamicObject, ResourceType};
use flotilla_core::patch::PatchType;
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

const TEST: Duration = Duration::from_secs(600);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST, fut).await.unwrap_or_else(|_| panic!("{what}: timed out (deadlocked?)"))
}

/// Runs both volume controllers (and their Event recorder) over `informers`.
fn spawn_controllers(kit: &TestKit, informers: &Informers) {
    let (recorder, task) = Recorder::new(kit.client(), EVENT_COMPONENT, kit.clock());
    kit.spawn_task(|stop| task.run(stop));
    kit.spawn(claim_controller(informers, kit.clock(), recorder.clone()));
    kit.spawn(volume_controller(informers, kit.clock(), recorder));
}

async fn kit_with_controllers() -> TestKit {
    let kit = TestKit::new().await;
    spawn_controllers(&kit, kit.informers());
    kit
}

fn pvs(kit: &TestKit) -> Api<PersistentVolume> {
    kit.api(None)
}

fn pvcs(kit: &TestKit) -> Api<PersistentVolumeClaim> {
    kit.api(Some("default"))
}

/// A hostPath volume of `size`, ReadWriteOnce, with `extra` spec fields.
async fn create_volume(kit: &TestKit, name: &str, size: &str, extra: Value) -> PersistentVolume {
    let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": format!("/data/{name}")}});
    if let Value::Object(more) = extra {
        spec.as_object_mut().expect("spec object").extend(more);
    }
    let pv: PersistentVolume =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("volume");
    pvs(kit).create(&pv).await.expect("create volume")
}

/// A ReadWriteOnce claim of `size` with `extra` spec fields.
async fn create_claim(kit: &TestKit, name: &str, size: &str, extra: Value) -> PersistentVolumeClaim {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}});
    if let Value::Object(more) = extra {
        spec.as_object_mut().expect("spec object").extend(more);
    }
    let pvc: PersistentVolumeClaim =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
            .expect("claim");
    pvcs(kit).create(&pvc).await.expect("create claim")
}

async fn create_class(kit: &TestKit, class: Value) {
    let sc: StorageClass = serde_json::from_value(class).expect("storage class");
    kit.api::<StorageClass>(None).create(&sc).await.expect("create class");
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> Option<&str> {
    c.status.as_ref()?.phase.as_deref()
}

fn phase_of_volume(v: &PersistentVolume) -> Option<&str> {
    v.status.as_ref()?.phase.as_deref()
}

fn volume_name_of(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec.as_ref()?.volume_name.as_deref()
}

fn claim_ref_of(v: &PersistentVolume) -> Option<(String, Option<String>)> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some((r.name.clone()?, r.uid.clone()))
}

/// Waits until claim `name` is bound and returns it.
async fn bound_claim(kit: &TestKit, name: &str) -> PersistentVolumeClaim {
    let api = pvcs(kit);
    kit.eventually(&format!("claim {name} bound"), || async {
        api.get(name).await.ok().filter(|c| phase_of_claim(c) == Some("Bound"))
    })
    .await
}

/// Waits until volume `name` has `phase` and returns it.
async fn volume_in_phase(kit: &TestKit, name: &str, phase: &str) -> PersistentVolume {
    let api = pvs(kit);
    kit.eventually(&format!("volume {name} {phase}"), || async {
        api.get(name).await.ok().filter(|v| phase_of_volume(v) == Some(phase))
    })
    .await
}

/// Waits for an Event with `reason` about the object named `name`; returns its message.
async fn event(kit: &TestKit, name: &str, reason: &str) -> String {
    let events = kit.api::<Event>(Some("default"));
    kit.eventually(&format!("{reason} event about {name}"), || async {
        let list = events.list(&ListOptions::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            let about = e.involved_object.name.as_deref() == Some(name);
            (about && e.reason.as_deref() == Some(reason)).then(|| e.message.unwrap_or_default())
        })
    })
    .await
}

/// Lets the controllers run for `d` of tokio time.
async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn static_volumes_bind_to_claims_they_fit() {
    within("static binding", async {
        let kit = kit_with_controllers().await;
        for (name, size, class) in [("small", "1Gi", ""), ("right", "5Gi", ""), ("fast", "10Gi", "fast")] {
            create_volume(&kit, name, size, json!({"storageClassName": class})).await;
        }
        let claim = create_claim(&kit, "want4", "4Gi", json!({"storageClassName": ""})).await;
        create_claim(&kit, "toobig", "20Gi", json!({"storageClassName": ""})).await;
        create_claim(&kit, "slow", "1Gi", json!({"storageClassName": "slow"})).await;

        let bound = bound_claim(&kit, "want4").await;
        assert_eq!(volume_name_of(&bound), Some("right"), "the smallest volume that fits");
        let annotations = bound.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
        let status = bound.status.clone().expect("status");
        assert_eq!(status.capacity.and_then(|c| c.get("storage").cloned()).map(|q| q.0), Some("5Gi".into()));
        assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert_eq!(bound.metadata.finalizers, Some(vec![PVC_PROTECTION_FINALIZER.to_string()]));
        let right = volume_in_phase(&kit, "right", "Bound").await;
        assert_eq!(claim_ref_of(&right), Some(("want4".into(), claim.metadata.uid.clone())));
        assert_eq!(right.metadata.finalizers, Some(vec![PV_PROTECTION_FINALIZER.to_string()]));

        // The others stay as they are: too small or of the wrong class.
        let message = event(&kit, "toobig", "FailedBinding").await;
        assert!(message.contains("no persistent volumes available"), "{message}");
        let message = event(&kit, "slow", "ProvisioningFailed").await;
        assert!(message.contains("\"slow\" not found"), "{message}");
        settle(Duration::from_secs(30)).await;
        for name in ["toobig", "slow"] {
            let c = pvcs(&kit).get(name).await.expect("claim");
            assert_eq!(phase_of_claim(&c), Some("Pending"), "{name}");
            assert_eq!(volume_name_of(&c), None, "{name}");
        }
        for name in ["small", "fast"] {
            let v = pvs(&kit).get(name).await.expect("volume");
            assert_eq!(phase_of_volume(&v), Some("Available"), "{name}");
            assert!(claim_ref_of(&v).is_none(), "{name}");
        }
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn pre_bound_volumes_and_claims_find_each_other() {
    within("pre-binding", async {
        let kit = kit_with_controllers().await;
        // Reserved for default/mine by claimRef; an exact fit for `other`, which must not get it.
        let reserved = json!({"storageClassName": "",
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "mine"}});
        create_volume(&kit, "reserved", "1Gi", reserved).await;
        volume_in_phase(&kit, "reserved", "Available").await;
        create_claim(&kit, "other", "1Gi", json!({"storageClassName": ""})).await;
        settle(Duration::from_secs(10)).await;
        assert_eq!(phase_of_claim(&pvcs(&kit).get("other").await.expect("claim")), Some("Pending"));
        let mine = create_claim(&kit, "mine", "1Gi", json!({"storageClassName": ""})).await;
        assert_eq!(volume_name_of(&bound_claim(&kit, "mine").await), Some("reserved"));
        let v = volume_in_phase(&kit, "reserved", "Bound").await;
        assert_eq!(claim_ref_of(&v), Some(("mine".into(), mine.metadata.uid.clone())), "uid filled in");

        // `other` was waiting all along and takes the next free volume.
        create_volume(&kit, "snug", "1Gi", json!({"storageClassName": ""})).await;
        assert_eq!(volume_name_of(&bound_claim(&kit, "other").await), Some("snug"));

        // A claim naming its volume gets that one, though a smaller one fits.
        create_volume(&kit, "small", "1Gi", json!({"storageClassName": ""})).await;
        create_volume(&kit, "chosen", "8Gi", json!({"storageClassName": ""})).await;
        volume_in_phase(&kit, "small", "Available").await;
        create_claim(&kit, "named", "1Gi", json!({"storageClassName": "", "volumeName": "chosen"})).await;
        assert_eq!(volume_name_of(&bound_claim(&kit, "named").await), Some("chosen"));
        volume_in_phase(&kit, "chosen", "Bound").await;
        assert_eq!(phase_of_volume(&pvs(&kit).get("small").await.expect("volume")), Some("Available"));
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn released_volumes_are_retained_deleted_or_failed() {
    within("release", async {
        let kit = kit_with_controllers().await;
        create_class(
            &kit,
            json!({"metadata": {"name": "local"}, "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete"}),
        )
        .await;
        create_volume(&kit, "kept", "1Gi", json!({"storageClassName": "keep"})).await;
        create_volume(&kit, "manual", "1Gi", json!({"storageClassName": "manual",
            "persistentVolumeReclaimPolicy": "Delete"}))
        .await;
        create_claim(&kit, "keep", "1Gi", json!({"storageClassName": "keep"})).await;
        create_claim(&kit, "manual", "1Gi", json!({"storageClassName": "manual"})).await;
        let made = create_claim(&kit, "made", "1Gi", json!({"storageClassName": "local"})).await;
        for name in ["keep", "manual", "made"] {
            bound_claim(&kit, name).await;
        }
        let provisioned = format!("pvc-{}", made.metadata.uid.clone().expect("uid"));
        volume_in_phase(&kit, &provisioned, "Bound").await;

        for name in ["keep", "manual", "made"] {
            pvcs(&kit).delete(name, &DeleteOptions::default()).await.expect("delete claim");
        }
        // Retain: Released, and stays so.
        volume_in_phase(&kit, "kept", "Released").await;
        // Delete, provisioned by us: the volume object goes.
        let api = pvs(&kit);
        kit.eventually("provisioned volume deleted", || async {
            api.get_opt(&provisioned).await.ok()?.is_none().then_some(())
        })
        .await;
        // Delete, made by hand: nobody can delete it.
        let failed = volume_in_phase(&kit, "manual", "Failed").await;
        let message = failed.status.and_then(|s| s.message).expect("message");
        assert!(message.contains("not provisioned by flotilla.dev/local-path"), "{message}");
        assert_eq!(event(&kit, "manual", "VolumeFailedDelete").await, message);
        settle(Duration::from_secs(60)).await;
        let kept = api.get("kept").await.expect("retained volume");
        assert_eq!(phase_of_volume(&kept), Some("Released"));
        assert!(claim_ref_of(&kept).is_some(), "a retained volume keeps its claimRef for the administrator");
        // A new claim of the same name does not get the released volume back.
        create_claim(&kit, "keep", "1Gi", json!({"storageClassName": "keep"})).await;
        settle(Duration::from_secs(10)).await;
        assert_eq!(phase_of_claim(&pvcs(&kit).get("keep").await.expect("claim")), Some("Pending"));
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn local_path_classes_provision_including_the_default_one() {
    within("provisioning", async {
        let kit = kit_with_controllers().await;
        create_class(&kit, json!({"metadata": {"name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": LOCAL_PATH_PROVISIONER}))
        .await;
        create_class(&kit, json!({"metadata": {"name": "scratch"}, "provisioner": LOCAL_PATH_PROVISIONER,
            "parameters": {"basePath": "/mnt/scratch"}, "reclaimPolicy": "Retain", "mountOptions": ["noatime"]}))
        .await;
        // No class named: the default class is written into the claim, then it is provisioned.
        let plain = create_claim(&kit, "plain", "2Gi", json!({})).await;
        let bound = bound_claim(&kit, "plain").await;
        let uid = plain.metadata.uid.clone().expect("uid");
        assert_eq!(bound.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()), Some("standard"));
        assert_eq!(volume_name_of(&bound), Some(format!("pvc-{uid}").as_str()));
        let annotations = bound.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.get(ANN_STORAGE_PROVISIONER).map(String::as_str), Some(LOCAL_PATH_PROVISIONER));
        let pv = volume_in_phase(&kit, &format!("pvc-{uid}"), "Bound").await;
        let pv_annotations = pv.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(pv_annotations.get(ANN_PROVISIONED_BY).map(String::as_str), Some(LOCAL_PATH_PROVISIONER));
        let spec = pv.spec.clone().expect("spec");
        let host = spec.host_path.expect("hostPath");
        assert_eq!(host.path, format!("/var/lib/flotilla/local-path/default_plain_{uid}"));
        assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(spec.capacity.and_then(|c| c.get("storage").cloned()).map(|q| q.0), Some("2Gi".into()));
        let message = event(&kit, "plain", "ProvisioningSucceeded").await;
        assert_eq!(message, format!("Successfully provisioned volume pvc-{uid} using {LOCAL_PATH_PROVISIONER}"));

        // A named class with its own base path, policy and mount options.
        let scratch = create_claim(&kit, "tmp", "1Gi", json!({"storageClassName": "scratch"})).await;
        let uid = scratch.metadata.uid.clone().expect("uid");
        bound_claim(&kit, "tmp").await;
        let pv = volume_in_phase(&kit, &format!("pvc-{uid}"), "Bound").await;
        let spec = pv.spec.expect("spec");
        assert_eq!(spec.host_path.map(|h| h.path), Some(format!("/mnt/scratch/default_tmp_{uid}")));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(spec.mount_options, Some(vec!["noatime".to_string()]));
        assert_eq!(spec.storage_class_name.as_deref(), Some("scratch"));
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn claims_and_volumes_in_use_are_not_removed_until_free() {
    within("protection", async {
        let kit = kit_with_controllers().await;
        create_volume(&kit, "disk", "1Gi", json!({"storageClassName": ""})).await;
        create_claim(&kit, "data", "1Gi", json!({"storageClassName": ""})).await;
        bound_claim(&kit, "data").await;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "user", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
        }))
        .expect("pod");
        let pods = kit.api::<Pod>(Some("default"));
        pods.create(&pod).await.expect("create pod");

        // Both deleted while in use: both stay, marked for deletion.
        pvcs(&kit).delete("data", &DeleteOptions::default()).await.expect("delete claim");
        pvs(&kit).delete("disk", &DeleteOptions::default()).await.expect("delete volume");
        settle(Duration::from_secs(60)).await;
        let claim = pvcs(&kit).get("data").await.expect("claim still there");
        assert!(claim.metadata.deletion_timestamp.is_some());
        assert_eq!(claim.metadata.finalizers, Some(vec![PVC_PROTECTION_FINALIZER.to_string()]));
        let disk = pvs(&kit).get("disk").await.expect("volume still there");
        assert_eq!(phase_of_volume(&disk), Some("Bound"));

        // The pod goes: the claim goes, the volume is released and goes too.
        pods.delete("user", &DeleteOptions::default()).await.expect("delete pod");
        let (claims, volumes) = (pvcs(&kit), pvs(&kit));
        kit.eventually("claim and volume gone", || async {
            let claim_gone = claims.get_opt("data").await.ok()?.is_none();
            let volume_gone = volumes.get_opt("disk").await.ok()?.is_none();
            (claim_gone && volume_gone).then_some(())
        })
        .await;
        kit.shutdown().await;
    })
    .await;
}

/// The in-process client, except that the first claim write binding a claim finds the claim
/// changed by someone else just before (a 409 Conflict after the volume write succeeded).
struct ConflictOnce {
    inner: Arc<dyn Client>,
    injected: AtomicUsize,
}

#[async_trait]
impl Client for ConflictOnce {
    async fn get(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &GetOptions,
    ) -> ClientResult<DynamicObject> {
        self.inner.get(t, ns, name, o).await
    }
    async fn list(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> ClientResult<ObjectList> {
        self.inner.list(t, ns, o).await
    }
    async fn create(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        obj: DynamicObject,
        o: &WriteOptions,
    ) -> ClientResult<Written> {
        self.inner.create(t, ns, obj, o).await
    }
    async fn replace(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: DynamicObject,
        sub: Subresource,
        o: &WriteOptions,
    ) -> ClientResult<Written> {
        let binds = t.plural == "persistentvolumeclaims"
            && sub == Subresource::Main
            && obj.data.get("spec").and_then(|s| s.get("volumeName")).is_some();
        if binds && self.injected.fetch_add(1, Ordering::SeqCst) == 0 {
            let touch =
                serde_json::to_vec(&json!({"metadata": {"labels": {"touched": "yes"}}})).expect("json");
            self.inner.patch(t, ns, name, PatchType::Merge, &touch, Subresource::Main, o).await?;
            // And a volume that fits better appears: the retry must still take the volume
            // already bound to the claim.
            let better: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "better"},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                    "hostPath": {"path": "/data/better"}}}))
            .expect("volume");
            Api::<PersistentVolume>::all(self.inner.clone()).create(&better).await?;
        }
        self.inner.replace(t, ns, name, obj, sub, o).await
    }
    async fn patch(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        pt: PatchType,
        patch: &[u8],
        sub: Subresource,
        o: &WriteOptions,
    ) -> ClientResult<Written> {
        self.inner.patch(t, ns, name, pt, patch, sub, o).await
    }
    async fn delete(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        name: &str,
        o: &DeleteOptions,
    ) -> ClientResult<Deleted> {
        self.inner.delete(t, ns, name, o).await
    }
    async fn watch(&self, t: &ResourceType, ns: Option<&str>, o: &ListOptions) -> ClientResult<WatchStream> {
        self.inner.watch(t, ns, o).await
    }
    async fn bind(&self, ns: &str, name: &str, node: &str, uid: Option<&str>) -> ClientResult<DynamicObject> {
        self.inner.bind(ns, name, node, uid).await
    }
    async fn delete_collection(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        l: &ListOptions,
        o: &DeleteOptions,
    ) -> ClientResult<ObjectList> {
        self.inner.delete_collection(t, ns, l, o).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_conflict_after_the_volume_write_converges_on_the_same_volume() {
    within("conflict mid-bind", async {
        let kit = TestKit::new().await;
        let hooked = Arc::new(ConflictOnce { inner: kit.client(), injected: AtomicUsize::new(0) });
        let informers = Informers::new(hooked.clone());
        spawn_controllers(&kit, &informers);
        informers.start(kit.shutdown_token());

        create_volume(&kit, "only", "2Gi", json!({"storageClassName": ""})).await;
        volume_in_phase(&kit, "only", "Available").await;
        let claim = create_claim(&kit, "c", "1Gi", json!({"storageClassName": ""})).await;
        let bound = bound_claim(&kit, "c").await;
        assert!(
            hooked.injected.load(Ordering::SeqCst) >= 2,
            "the first claim write conflicted, a later one did not"
        );
        assert_eq!(volume_name_of(&bound), Some("only"));
        let labels = bound.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("touched").map(String::as_str), Some("yes"), "the concurrent change is kept");
        let v = volume_in_phase(&kit, "only", "Bound").await;
        assert_eq!(claim_ref_of(&v), Some(("c".into(), claim.metadata.uid.clone())));
        let better = volume_in_phase(&kit, "better", "Available").await;
        assert!(claim_ref_of(&better).is_none(), "the late volume stays free");
        kit.shutdown().await;
        informers.stopped().await;
    })
    .await;
}
