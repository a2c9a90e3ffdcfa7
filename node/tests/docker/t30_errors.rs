//! Bad input ends in a clear reason: missing or invalid images, missing commands, mounts that
//! cannot be made, unknown ids, duplicate creates.

use std::time::Duration;

use flotilla_node::runtime::{ContainerConfig, ContainerRuntime, ContainerState, Error, LogOptions, Mount};

use crate::{strings, with_docker};

#[tokio::test]
async fn a_missing_image_is_err_image_pull() {
    with_docker("a_missing_image_is_err_image_pull", "image inspect", |env| async move {
        let missing = "flotilla/does-not-exist:never";
        let error = env.runtime.ensure_image(missing).await.expect_err("the image is missing");
        assert!(matches!(&error, Error::ImageNotFound { image, .. } if image == missing), "{error:?}");
        assert_eq!(error.reason(), "ErrImagePull");
        env.runtime.ensure_image(&env.image).await.expect("the busybox image exists");

        let (_pod, sandbox) = env.pod("missing-image").await;
        let config =
            ContainerConfig { image: missing.to_owned(), ..env.config(&sandbox.pod, "app", &["true"]) };
        let error = env.runtime.create_container(&sandbox.id, &config).await.expect_err("cannot create");
        assert_eq!(error.reason(), "ErrImagePull", "{error:?}");
        assert!(env.runtime.containers().await.expect("listed").is_empty());
    })
    .await;
}

#[tokio::test]
async fn an_invalid_image_name_is_invalid_image_name() {
    with_docker("an_invalid_image_name_is_invalid_image_name", "image checks", |env| async move {
        for invalid in ["Not Valid!", "team/UPPER", "busybox:", "a@sha256:short"] {
            let error = env.runtime.ensure_image(invalid).await.expect_err(invalid);
            assert!(matches!(&error, Error::InvalidImageName { image } if image == invalid), "{error:?}");
            assert_eq!(error.reason(), "InvalidImageName");
        }
        let (_pod, sandbox) = env.pod("invalid-image").await;
        let config =
            ContainerConfig { image: "Not Valid!".to_owned(), ..env.config(&sandbox.pod, "app", &["true"]) };
        let error = env.runtime.create_container(&sandbox.id, &config).await.expect_err("cannot create");
        assert_eq!(error.reason(), "InvalidImageName");
    })
    .await;
}

#[tokio::test]
async fn a_missing_command_is_run_container_error() {
    with_docker("a_missing_command_is_run_container_error", "container start", |env| async move {
        let (_pod, sandbox) = env.pod("no-command").await;
        let config = env.config(&sandbox.pod, "app", &["/no/such/command"]);
        let id = env.runtime.create_container(&sandbox.id, &config).await.expect("created: the image exists");
        let error = env.runtime.start_container(&id).await.expect_err("the command does not exist");
        assert_eq!(error.reason(), "RunContainerError");
        assert!(error.to_string().contains("no such file or directory"), "{error}");
        let state = env.container(&id).await.expect("still listed").state;
        match &state {
            ContainerState::Exited { exit_code, reason, .. } => {
                assert_ne!(*exit_code, 0);
                assert_eq!(reason, "ContainerCannotRun");
            }
            other => panic!("a container that could not start reports exited: {other:?}"),
        }

        let not_on_path = env.config(&sandbox.pod, "app2", &["nosuchcommand"]);
        let id = env.runtime.create_container(&sandbox.id, &not_on_path).await.expect("created");
        let error = env.runtime.start_container(&id).await.expect_err("not on PATH");
        assert_eq!(error.reason(), "RunContainerError");
        assert!(error.to_string().contains("executable file not found"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn a_missing_mount_source_is_create_container_error() {
    with_docker("a_missing_mount_source_is_create_container_error", "container create", |env| async move {
        let parent = tempfile::tempdir().expect("a temp dir");
        let missing = parent.path().join("not-there");
        let (_pod, sandbox) = env.pod("bad-mount").await;
        let config = ContainerConfig {
            mounts: vec![Mount {
                host_path: missing.clone(),
                container_path: "/data".into(),
                read_only: false,
            }],
            ..env.config(&sandbox.pod, "app", &["true"])
        };
        let error =
            env.runtime.create_container(&sandbox.id, &config).await.expect_err("the source is missing");
        assert_eq!(error.reason(), "CreateContainerError");
        assert!(error.to_string().contains("does not exist"), "{error}");
        assert!(!missing.exists(), "docker must not create the missing source");
        assert!(env.runtime.containers().await.expect("listed").is_empty());
    })
    .await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_duplicates_conflict() {
    with_docker(
        "unknown_ids_are_not_found_and_duplicates_conflict",
        "calls on unknown ids",
        |env| async move {
            let (_pod, sandbox) = env.pod("unknown").await;
            let config = env.config(&sandbox.pod, "app", &["sleep", "60"]);
            let error =
                env.runtime.create_container("no-such-sandbox", &config).await.expect_err("no sandbox");
            assert!(matches!(error, Error::NotFound { what: "sandbox", .. }), "{error:?}");
            let gone = "no-such-container";
            let results = [
                env.runtime.start_container(gone).await.map(drop),
                env.runtime.stop_container(gone, Duration::ZERO).await.map(drop),
                env.runtime.remove_container(gone).await.map(drop),
                env.runtime.logs(gone, &LogOptions::default()).await.map(drop),
                env.runtime.exec(gone, &strings(&["true"]), Duration::from_secs(5)).await.map(drop),
            ];
            for result in results {
                assert!(
                    matches!(&result, Err(Error::NotFound { what: "container", id }) if id == gone),
                    "{result:?}"
                );
            }

            let first = env.runtime.create_container(&sandbox.id, &config).await.expect("created");
            let error =
                env.runtime.create_container(&sandbox.id, &config).await.expect_err("the same attempt again");
            assert_eq!(error.reason(), "CreateContainerError");
            let listed = env.runtime.containers().await.expect("listed");
            assert_eq!(listed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [first.as_str()]);
        },
    )
    .await;
}
