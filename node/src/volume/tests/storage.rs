//! emptyDir, hostPath and persistentVolumeClaim volumes, subPath mounts and teardown.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use flotilla_core::controller::testing::TestKit;
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, HostPathVolumeSource, NFSVolumeSource, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{container, mode, mount, pod, read, within};
use crate::runtime::Mount;
use crate::volume::emptydir::is_mount_point;
use crate::volume::{Error, VolumeManager};

fn empty_dir(name: &str, medium: Option<&str>, size: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_string),
            size_limit: size.map(|s| Quantity(s.into())),
        }),
        ..Default::default()
    }
}

fn host_path(name: &str, path: &std::path::Path, type_: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_str().expect("UTF-8 temp path").into(),
            type_: type_.map(str::to_string),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn empty_dirs_host_paths_sub_paths_and_teardown() {
    within("emptyDir and hostPath volumes", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let host = tempfile::tempdir().expect("a temporary directory");
        let data = host.path().join("data");
        let p = pod(
            vec![empty_dir("scratch", None, None), host_path("data", &data, Some("DirectoryOrCreate"))],
            vec![
                mount("scratch", "/scratch"),
                VolumeMount { sub_path: Some("logs/app".into()), ..mount("scratch", "/logs") },
                VolumeMount { read_only: Some(true), ..mount("data", "/data") },
            ],
        );
        let vm = VolumeManager::new(root.path().to_path_buf(), kit.client());
        assert!(vm.pods_on_disk().await.expect("list").is_empty());
        let vols = vm.setup(&p).await.expect("volumes ready");
        let scratch = root.path().join("pods/uid-1/volumes/emptydir/scratch");
        assert_eq!(vols.paths["scratch"], scratch);
        assert_eq!(mode(&scratch), 0o777);
        assert!(data.is_dir(), "DirectoryOrCreate made the host directory");
        assert!(vols.read_only.is_empty());
        assert_eq!(vm.prepared("uid-1"), Some(vols.clone()), "setup is remembered");

        let mounts = vm.mounts(&p, &vols, container(&p)).expect("mounts");
        let logs = fs::canonicalize(scratch.join("logs/app")).expect("the subPath directory was created");
        assert_eq!(
            mounts,
            vec![
                Mount { host_path: scratch.clone(), container_path: "/scratch".into(), read_only: false },
                Mount { host_path: logs, container_path: "/logs".into(), read_only: false },
                Mount { host_path: data.clone(), container_path: "/data".into(), read_only: true },
            ]
        );
        let escape = pod(
            vec![empty_dir("scratch", None, None)],
            vec![VolumeMount { sub_path: Some("../../x".into()), ..mount("scratch", "/x") }],
        );
        match vm.mounts(&escape, &vols, container(&escape)) {
            Err(Error::Mount { container, volume, reason, .. }) => {
                assert_eq!((container.as_str(), volume.as_str()), ("app", "scratch"));
                assert!(reason.contains("../../x"), "{reason}");
            }
            other => panic!("a subPath with .. must be refused, got {other:?}"),
        }
        let unknown = pod(vec![], vec![mount("nope", "/nope")]);
        let err = vm.mounts(&unknown, &vols, container(&unknown)).expect_err("an unknown volume");
        assert!(matches!(&err, Error::UnknownVolume { volume, .. } if volume == "nope"), "{err}");
        assert!(err.to_string().contains("(volumes: data, scratch)"), "{err}");

        fs::write(scratch.join("f"), "x").expect("write into the emptyDir");
        fs::write(data.join("keep"), "x").expect("write into the hostPath");
        assert_eq!(vm.pods_on_disk().await.expect("list"), vec!["uid-1".to_string()]);
        vm.teardown("uid-1").await.expect("teardown");
        assert!(!root.path().join("pods/uid-1").exists());
        assert_eq!(vm.prepared("uid-1"), None, "teardown forgets the setup");
        assert_eq!(read(&data.join("keep")), "x", "hostPath data is never touched");
        assert!(vm.pods_on_disk().await.expect("list").is_empty());
        vm.teardown("uid-1").await.expect("a second teardown is a no-op");
        assert!(vm.teardown("..").await.is_err(), "a uid that is not one path element is refused");
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn host_path_type_errors_and_file_volumes() {
    within("hostPath type checks", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let host = tempfile::tempdir().expect("a temporary directory");
        let vm = VolumeManager::new(root.path().to_path_buf(), kit.client());
        let missing = host.path().join("missing");
        let err = vm
            .setup(&pod(vec![host_path("h", &missing, Some("Directory"))], vec![]))
            .await
            .expect_err("missing");
        match &err {
            Error::Volume { volume, reason, .. } => {
                assert_eq!(volume, "h");
                assert!(reason.contains("does not exist"), "{reason}");
            }
            other => panic!("expected a volume error, got {other:?}"),
        }
        let file = host.path().join("config.txt");
        let p = pod(
            vec![host_path("f", &file, Some("FileOrCreate"))],
            vec![VolumeMount { sub_path: Some("x".into()), ..mount("f", "/x") }],
        );
        let vols = vm.setup(&p).await.expect("FileOrCreate");
        assert!(file.is_file() && vols.files.contains("f"));
        let err = vm.mounts(&p, &vols, container(&p)).expect_err("subPath of a file");
        assert!(err.to_string().contains("single file"), "{err}");

        let nfs = Volume {
            name: "share".into(),
            nfs: Some(NFSVolumeSource { path: "/x".into(), server: "nas".into(), read_only: None }),
            ..Default::default()
        };
        let err = vm.setup(&pod(vec![nfs], vec![])).await.expect_err("nfs");
        assert_eq!(
            err.to_string(),
            "pod default/web: volume \"share\": volume type nfs is not supported by this node"
        );
        kit.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs() {
    within("a memory emptyDir", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let vm = VolumeManager::new(root.path().to_path_buf(), kit.client());
        let p = pod(vec![empty_dir("mem", Some("Memory"), Some("8Mi"))], vec![]);
        if !nix::unistd::geteuid().is_root() {
            let err = vm.setup(&p).await.expect_err("not root");
            assert!(err.to_string().contains("root"), "{err}");
            eprintln!("skipping the tmpfs part: the tests do not run as root");
            kit.shutdown().await;
            return;
        }
        let vols = match vm.setup(&p).await {
            Ok(v) => v,
            // Root without CAP_SYS_ADMIN (an unprivileged container) cannot mount.
            Err(e) if e.event_message().contains("EPERM") || e.event_message().contains("not permitted") => {
                eprintln!("skipping the tmpfs part: mount refused: {}", e.event_message());
                kit.shutdown().await;
                return;
            }
            Err(e) => panic!("memory emptyDir: {}", e.event_message()),
        };
        let dir = &vols.paths["mem"];
        assert!(is_mount_point(dir).expect("stat"), "a tmpfs is mounted at {}", dir.display());
        let stat = nix::sys::statvfs::statvfs(dir).expect("statvfs");
        assert_eq!(stat.blocks() * stat.fragment_size(), 8 * 1024 * 1024, "sizeLimit sets the tmpfs size");
        let dev = fs::metadata(dir).expect("stat").dev();
        vm.setup(&p).await.expect("setup again does not mount twice");
        assert_eq!(fs::metadata(dir).expect("stat").dev(), dev);
        fs::write(dir.join("f"), "x").expect("write into the tmpfs");
        vm.teardown("uid-1").await.expect("teardown unmounts and removes");
        assert!(!root.path().join("pods/uid-1").exists());
        kit.shutdown().await;
    })
    .await;
}

fn claim(name: &str, volume: Option<&str>, phase: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                ..Default::default()
            }),
            volume_name: volume.map(str::to_string),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus { phase: Some(phase.into()), ..Default::default() }),
    }
}

fn claim_volume(name: &str, claim: &str, read_only: bool) -> Volume {
    Volume {
        name: name.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.into(),
            read_only: read_only.then_some(true),
        }),
        ..Default::default()
    }
}

async fn setup_claim(vm: &VolumeManager, c: &str) -> crate::volume::Result<crate::volume::PodVolumes> {
    vm.setup(&pod(vec![claim_volume("v", c, false)], vec![])).await
}

/// Creates a claim and sets its status (create ignores status).
async fn create_claim(kit: &TestKit, c: &PersistentVolumeClaim) {
    let api = kit.api::<PersistentVolumeClaim>(Some("default"));
    let name = c.metadata.name.clone().expect("test claims are named");
    let mut created = api.create(c).await.expect("create the claim");
    created.status = c.status.clone();
    api.replace_status(&name, &created).await.expect("set the claim's status");
}

#[tokio::test]
async fn claims_must_be_bound_to_host_path_volumes() {
    within("persistentVolumeClaim volumes", async {
        let kit = TestKit::new().await;
        let root = tempfile::tempdir().expect("a temporary directory");
        let host = tempfile::tempdir().expect("a temporary directory");
        let vm = VolumeManager::new(root.path().to_path_buf(), kit.client());
        let pv_dir = host.path().join("pv1");
        let pv = |name: &str, spec: PersistentVolumeSpec| PersistentVolume {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                ..spec
            }),
            ..Default::default()
        };
        let pvs = kit.api::<PersistentVolume>(None);
        pvs.create(&pv(
            "pv1",
            PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource {
                    path: pv_dir.to_str().expect("UTF-8").into(),
                    type_: Some("DirectoryOrCreate".into()),
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("create pv1");
        pvs.create(&pv(
            "pv-nfs",
            PersistentVolumeSpec {
                nfs: Some(NFSVolumeSource { path: "/x".into(), server: "nas".into(), read_only: None }),
                ..Default::default()
            },
        ))
        .await
        .expect("create pv-nfs");
        create_claim(&kit, &claim("pending", None, "Pending")).await;
        create_claim(&kit, &claim("data", Some("pv1"), "Bound")).await;
        create_claim(&kit, &claim("remote", Some("pv-nfs"), "Bound")).await;
        create_claim(&kit, &claim("dangling", Some("pv-gone"), "Bound")).await;

        let reason = |e: Error| match e {
            Error::Volume { volume, reason, .. } => {
                assert_eq!(volume, "v");
                reason
            }
            other => panic!("expected a volume error, got {other:?}"),
        };
        let r = reason(setup_claim(&vm, "pending").await.expect_err("unbound"));
        assert_eq!(r, "persistentvolumeclaim \"pending\" is not bound (phase Pending)");
        let r = reason(setup_claim(&vm, "absent").await.expect_err("missing"));
        assert_eq!(r, "persistentvolumeclaim \"absent\" not found");
        let r = reason(setup_claim(&vm, "remote").await.expect_err("nfs"));
        assert!(r.contains("has source nfs"), "{r}");
        let r = reason(setup_claim(&vm, "dangling").await.expect_err("no volume"));
        assert!(r.contains("\"pv-gone\"") && r.contains("not found"), "{r}");

        let p = pod(vec![claim_volume("v", "data", true)], vec![mount("v", "/data")]);
        let vols = vm.setup(&p).await.expect("a bound claim");
        assert_eq!(vols.paths["v"], pv_dir);
        assert!(pv_dir.is_dir(), "DirectoryOrCreate on the PV made its directory");
        let mounts = vm.mounts(&p, &vols, container(&p)).expect("mounts");
        assert_eq!(
            mounts,
            vec![Mount {
                host_path: pv_dir.clone(),
                container_path: PathBuf::from("/data"),
                read_only: true
            }]
        );
        fs::write(pv_dir.join("keep"), "x").expect("write");
        vm.teardown("uid-1").await.expect("teardown");
        assert_eq!(read(&pv_dir.join("keep")), "x", "PV data is never touched");
        kit.shutdown().await;
    })
    .await;
}
