use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use crate::runtime::{
    ContainerConfig, ContainerState, Error, ExecOutput, LogOptions, PodRef, Result, Sandbox, SandboxConfig,
};

/// Containers of pod `ns/web` (two instances of `app`) and the options each read asked for.
#[derive(Default)]
struct Fake {
    asked: Mutex<Vec<(String, LogOptions)>>,
}

fn container(id: &str, name: &str, restart_count: u32) -> Container {
    Container {
        id: id.into(),
        pod: PodRef { uid: "u1".into(), namespace: "ns".into(), name: "web".into() },
        name: name.into(),
        image: "busybox".into(),
        image_id: None,
        state: ContainerState::Running { started_at: None },
        restart_count,
    }
}

#[async_trait]
impl ContainerRuntime for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    async fn ensure_image(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn run_sandbox(&self, _: &SandboxConfig) -> Result<Sandbox> {
        Err(Error::Unavailable("not in this test".into()))
    }
    async fn remove_sandbox(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn create_container(&self, _: &str, _: &ContainerConfig) -> Result<String> {
        Err(Error::Unavailable("not in this test".into()))
    }
    async fn start_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
        Ok(())
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        Ok(vec![])
    }
    async fn containers(&self) -> Result<Vec<Container>> {
        let crashed = Container {
            state: ContainerState::Exited {
                exit_code: 1,
                reason: "Error".into(),
                started_at: None,
                finished_at: None,
            },
            ..container("c-crash", "crashy", 4)
        };
        Ok(vec![
            container("c-old", "app", 0),
            container("c-new", "app", 1),
            container("c-side", "side", 0),
            crashed,
        ])
    }
    async fn logs(&self, id: &str, options: &LogOptions) -> Result<BoxStream<'static, Result<Bytes>>> {
        self.asked.lock().expect("not poisoned").push((id.to_string(), options.clone()));
        let chunks =
            vec![Ok(Bytes::from(format!("{id} line 1\n"))), Ok(Bytes::from(format!("{id} line 2\n")))];
        Ok(Box::pin(stream::iter(chunks)))
    }
    async fn exec(&self, _: &str, _: &[String], _: Duration) -> Result<ExecOutput> {
        Err(Error::Unavailable("not in this test".into()))
    }
}

async fn get(fake: &Arc<Fake>, uri: &str) -> (StatusCode, String) {
    let runtime: Arc<dyn ContainerRuntime> = fake.clone();
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = router(runtime).oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn serves_the_newest_instance_or_the_previous_one() {
    let fake = Arc::new(Fake::default());
    let (code, body) = get(&fake, "/containerLogs/ns/web/app?tailLines=2&timestamps=true&follow=true").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, "c-new line 1\nc-new line 2\n");
    let (_, body) = get(&fake, "/containerLogs/ns/web/app?previous=true").await;
    assert_eq!(body, "c-old line 1\nc-old line 2\n");
    let asked = fake.asked.lock().expect("not poisoned").clone();
    assert_eq!(asked[0].0, "c-new");
    assert_eq!(asked[0].1, LogOptions { follow: true, tail_lines: Some(2), since: None, timestamps: true });
    assert_eq!(asked[1].0, "c-old");
}

/// Found by `node/tests/agent_real` (`t50_logs::crash_loop_previous`): a container waiting
/// in CrashLoopBackOff keeps only its last exited instance, which is its previous one.
#[tokio::test]
async fn the_previous_instance_of_a_crash_looping_container_is_its_last_exit() {
    let fake = Arc::new(Fake::default());
    let (code, body) = get(&fake, "/containerLogs/ns/web/crashy?previous=true").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body, "c-crash line 1\nc-crash line 2\n");
}

#[tokio::test]
async fn limit_bytes_cuts_the_stream() {
    let fake = Arc::new(Fake::default());
    let (code, body) = get(&fake, "/containerLogs/ns/web/side?limitBytes=15").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, "c-side line 1\nc");
}

#[tokio::test]
async fn unknown_containers_and_bad_queries_are_named() {
    let fake = Arc::new(Fake::default());
    let (code, body) = get(&fake, "/containerLogs/ns/web/nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("\"nope\"") && body.contains("ns/web"), "{body}");
    let (code, body) = get(&fake, "/containerLogs/ns/web/side?previous=true").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("previous terminated container"), "{body}");
    let (code, body) = get(&fake, "/containerLogs/ns/web/app?tailLines=many").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("tailLines"), "{body}");
    assert!(fake.asked.lock().expect("not poisoned").is_empty(), "no log was read");
}
