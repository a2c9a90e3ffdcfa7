use std::time::Duration;

use flotilla_node::runtime::{ContainerRuntime, LogOptions, Mount};

use crate::{exit_of, logs, run, runtime, shell, within};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn bind_mounts_are_visible_at_their_container_path_only() {
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    within("containers with bind mounts", async {
        let root = tempfile::tempdir().expect("tempdir");
        let host = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::write(host.path().join("hello.txt"), "hi\n").expect("write");
        let target = elsewhere.path().join("mnt/data");
        let rt = runtime(root.path());
        let mut config = shell(&format!(
            "cat {t}/hello.txt; echo made > {t}/new.txt && echo writable",
            t = target.display()
        ));
        config.mounts = vec![Mount {
            host_path: host.path().to_path_buf(),
            container_path: target.clone(),
            read_only: false,
        }];
        let id = run(&rt, &config).await;
        assert_eq!(exit_of(&rt, &id).await.0, 0);
        assert_eq!(logs(&rt, &id, LogOptions::default()).await, "hi\nwritable\n");
        assert_eq!(std::fs::read_to_string(host.path().join("new.txt")).expect("written through"), "made\n");
        // The mount stayed in the container's namespace: the host sees an empty target.
        assert_eq!(std::fs::read_dir(&target).expect("target exists").count(), 0);
    })
    .await;
}

#[tokio::test]
async fn read_only_mounts_refuse_writes_and_exec_sees_mounts() {
    if !is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    within("a container with a read-only mount", async {
        let root = tempfile::tempdir().expect("tempdir");
        let host = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::fs::write(host.path().join("hello.txt"), "hi\n").expect("write");
        let target = elsewhere.path().join("ro");
        let rt = runtime(root.path());
        let mut config = shell(&format!(
            "{{ echo x > {}/f; }} 2>/dev/null || echo refused; exec sleep 30",
            target.display()
        ));
        config.mounts = vec![Mount {
            host_path: host.path().to_path_buf(),
            container_path: target.clone(),
            read_only: true,
        }];
        let id = run(&rt, &config).await;
        while logs(&rt, &id, LogOptions::default()).await != "refused\n" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let command = vec!["cat".to_string(), target.join("hello.txt").display().to_string()];
        let out = rt.exec(&id, &command, Duration::from_secs(5)).await.expect("exec");
        assert_eq!((out.exit_code, out.output.as_slice()), (0, &b"hi\n"[..]));
        assert!(!host.path().join("f").exists());
        rt.remove_container(&id).await.expect("remove");
    })
    .await;
}
