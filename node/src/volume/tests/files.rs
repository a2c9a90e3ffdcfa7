//! configMap, secret, downwardAPI and projected volumes through the manager.

use std::fs;
use std::path::PathBuf;

use flotilla_core::controller::testing::TestKit;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, ConfigMapVolumeSource, DownwardAPIProjection, DownwardAPIVolumeFile,
    KeyToPath, ObjectFieldSelector, ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource,
    Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{container, mode, mount, pod, read, within};
use crate::volume::atomic::DATA_DIR;
use crate::volume::{Error, VolumeManager};

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

fn cm_volume(name: &str, cm: &str, items: Option<Vec<KeyToPath>>, optional: bool) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: cm.into(),
            items,
            optional: optional.then_some(true),
            default_mode: None,
        }),
        ..Default::default()
    }
}

fn manager(kit: &TestKit, root: &tempfile::TempDir) -> VolumeManager {
    VolumeManager::new(root.path().to_path_buf(), kit.client())
}

#[tokio::test]
async fn config_map_items_modes_and_read_only() {
    within("configMap volume setup", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        kit.api::<ConfigMap>(Some("default"))
            .create(&config_map("settings", &[("a", "1"), ("b", "2"), ("c", "3")]))
            .await
            .expect("create the configmap");
        let items = vec![
            KeyToPath { key: "a".into(), path: "conf/a.ini".into(), mode: Some(0o600) },
            KeyToPath { key: "b".into(), path: "b".into(), mode: None },
        ];
        let p = pod(
            vec![
                cm_volume("all", "settings", None, false),
                cm_volume("some", "settings", Some(items), false),
            ],
            vec![mount("all", "/etc/all"), mount("some", "/etc/some")],
        );
        let vm = manager(&kit, &root);
        let vols = vm.setup(&p).await.expect("volumes ready");
        let all = root.path().join("pods/uid-1/volumes/configmap/all");
        assert_eq!(vols.paths.get("all"), Some(&all));
        assert_eq!(read(&all.join("a")), "1");
        assert_eq!(read(&all.join("c")), "3");
        assert_eq!(mode(&all.join(DATA_DIR).join("c")), 0o644, "defaultMode is 0644");
        let some = &vols.paths["some"];
        assert_eq!(read(&some.join("conf/a.ini")), "1");
        assert_eq!(mode(&some.join("..data/conf/a.ini")), 0o600);
        assert!(!some.join("c").exists(), "only the listed items");
        assert!(vols.read_only.contains("all") && vols.read_only.contains("some"));

        let mounts = vm.mounts(&p, &vols, container(&p)).expect("mounts");
        assert_eq!(mounts.len(), 2);
        assert!(mounts.iter().all(|m| m.read_only), "configMap volumes are mounted read-only");
        assert_eq!(mounts[0].container_path, PathBuf::from("/etc/all"));

        // Idempotent: a second setup changes nothing.
        let version = fs::read_link(all.join(DATA_DIR)).expect("..data");
        assert_eq!(vm.setup(&p).await.expect("again"), vols);
        assert_eq!(fs::read_link(all.join(DATA_DIR)).expect("..data"), version);
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn missing_objects_and_keys_unless_optional() {
    within("configMap and secret volumes of missing objects", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let vm = manager(&kit, &root);
        let p = pod(vec![cm_volume("cfg", "absent", None, false)], vec![]);
        match vm.setup(&p).await {
            Err(Error::Volume { pod, volume, reason }) => {
                assert_eq!((pod.as_str(), volume.as_str()), ("default/web", "cfg"));
                assert_eq!(reason, "configmap \"absent\" not found");
            }
            other => panic!("a missing configmap must fail, got {other:?}"),
        }
        let p = pod(vec![cm_volume("cfg", "absent", None, true)], vec![]);
        let vols = vm.setup(&p).await.expect("an optional missing configmap is an empty volume");
        assert_eq!(fs::read_dir(vols.paths["cfg"].join(DATA_DIR)).expect("a version").count(), 0);

        kit.api::<ConfigMap>(Some("default"))
            .create(&config_map("present", &[("a", "1")]))
            .await
            .expect("create");
        let items = vec![KeyToPath { key: "zzz".into(), path: "z".into(), mode: None }];
        let p = pod(vec![cm_volume("cfg", "present", Some(items.clone()), false)], vec![]);
        let err = vm.setup(&p).await.expect_err("a missing key");
        assert!(err.to_string().contains("has no key \"zzz\""), "{err}");
        let p = pod(vec![cm_volume("cfg", "present", Some(items), true)], vec![]);
        vm.setup(&p).await.expect("an optional missing key is skipped");

        let secret = Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource { secret_name: Some("nope".into()), ..Default::default() }),
            ..Default::default()
        };
        let err = vm.setup(&pod(vec![secret], vec![])).await.expect_err("a missing secret");
        assert_eq!(err.to_string(), "pod default/web: volume \"creds\": secret \"nope\" not found");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn secret_bytes_and_default_mode() {
    within("secret volume setup", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let secret = Secret {
            metadata: ObjectMeta { name: Some("tls".into()), ..Default::default() },
            data: Some([("key".to_string(), ByteString(vec![0, 159, 146, 150]))].into()),
            ..Default::default()
        };
        kit.api::<Secret>(Some("default")).create(&secret).await.expect("create the secret");
        let v = Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("tls".into()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        };
        let vols = manager(&kit, &root).setup(&pod(vec![v], vec![])).await.expect("volumes ready");
        let dir = &vols.paths["tls"];
        assert_eq!(fs::read(dir.join("key")).expect("the key file"), vec![0, 159, 146, 150]);
        assert_eq!(mode(&dir.join("..data/key")), 0o400);
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn refresh_swaps_in_changed_objects() {
    within("configMap refresh", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let api = kit.api::<ConfigMap>(Some("default"));
        api.create(&config_map("settings", &[("a", "old"), ("b", "b")])).await.expect("create");
        let p = pod(vec![cm_volume("cfg", "settings", None, false)], vec![]);
        let vm = manager(&kit, &root);
        let vols = vm.setup(&p).await.expect("volumes ready");
        let dir = vols.paths["cfg"].clone();
        let old_version = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert!(!vm.refresh(&p).await.expect("refresh"), "nothing changed yet");

        let mut cm = api.get("settings").await.expect("get");
        cm.data = Some([("a".to_string(), "new".to_string())].into());
        api.replace("settings", &cm).await.expect("update the configmap");
        assert!(vm.refresh(&p).await.expect("refresh"), "the configmap changed");
        assert_eq!(read(&dir.join("a")), "new");
        assert!(fs::symlink_metadata(dir.join("b")).is_err(), "a deleted key disappears");
        let new_version = fs::read_link(dir.join(DATA_DIR)).expect("..data");
        assert_ne!(new_version, old_version);
        assert!(!dir.join(&old_version).exists(), "the old version is removed");
        assert!(!vm.refresh(&p).await.expect("refresh"));

        api.delete("settings", &Default::default()).await.expect("delete");
        let err = vm.refresh(&p).await.expect_err("the configmap is gone");
        assert!(err.to_string().contains("not found"), "{err}");
        assert_eq!(read(&dir.join("a")), "new", "a failed refresh keeps the files");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn downward_api_and_projected_volumes() {
    within("downwardAPI and projected volumes", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        kit.api::<ConfigMap>(Some("default")).create(&config_map("cm", &[("k", "v")])).await.expect("create");
        let field = |path: &str, field_path: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), api_version: None }),
            ..Default::default()
        };
        let projected = Volume {
            name: "all".into(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o440),
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection { name: "cm".into(), ..Default::default() }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: "absent".into(),
                            optional: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![field("uid", "metadata.uid")]),
                        }),
                        ..Default::default()
                    },
                ]),
            }),
            ..Default::default()
        };
        let downward = Volume {
            name: "info".into(),
            downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIVolumeSource {
                items: Some(vec![field("name", "metadata.name")]),
                default_mode: None,
            }),
            ..Default::default()
        };
        let vols = manager(&kit, &root).setup(&pod(vec![projected, downward], vec![])).await.expect("ready");
        assert_eq!(read(&vols.paths["all"].join("k")), "v");
        assert_eq!(read(&vols.paths["all"].join("uid")), "uid-1");
        assert_eq!(mode(&vols.paths["all"].join("..data/k")), 0o440);
        assert_eq!(read(&vols.paths["info"].join("name")), "web");
        assert!(vols.read_only.contains("all") && vols.read_only.contains("info"));
        kit.shutdown().await;
    })
    .await;
}
