//! Shutdown: in-flight requests finish, stuck ones are cut at the drain deadline, and `serve`
//! returns only when its connections are gone.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use flotilla_api::pki::ClientAuth;
use flotilla_api::tls::ServeOptions;
use http::StatusCode;
use tokio::sync::Notify;

use crate::support::{HTTP1, HTTP2, TestPki, TestServer, client_config, fetch, within};

/// `/slow` notifies `entered`, then answers once `release` is notified.
fn slow_router(entered: Arc<Notify>, release: Arc<Notify>) -> Router {
    Router::new().route(
        "/slow",
        get(move || async move {
            entered.notify_one();
            release.notified().await;
            "finished"
        }),
    )
}

#[tokio::test]
async fn in_flight_requests_finish_after_shutdown_begins() -> anyhow::Result<()> {
    within("graceful shutdown with an in-flight request (serve not returning?)", 30, async {
        let t = TestPki::new()?;
        for alpn in [HTTP1, HTTP2] {
            let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            let app = slow_router(entered.clone(), release.clone());
            let server =
                TestServer::start(&t.pki, ClientAuth::Optional, app, ServeOptions::default()).await?;
            let request =
                tokio::spawn(fetch(server.addr, client_config(t.pki.ca_pem(), None, alpn)?, "/slow"));
            entered.notified().await;

            server.shutdown.cancel();
            // Let the server act on the cancellation while the handler is still running: it
            // must neither return nor cut the request.
            tokio::task::yield_now().await;
            assert!(!server.task.is_finished(), "serve returned with a request in flight");
            release.notify_one();

            let reply = request.await??;
            assert_eq!((reply.status, reply.body.as_str()), (StatusCode::OK, "finished"));
            server.task.await??;
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn stuck_requests_are_dropped_at_the_drain_deadline() -> anyhow::Result<()> {
    within("shutdown with a stuck request (drain deadline not enforced?)", 30, async {
        let t = TestPki::new()?;
        for alpn in [HTTP1, HTTP2] {
            let entered = Arc::new(Notify::new());
            let never = Arc::new(Notify::new());
            let app = slow_router(entered.clone(), never.clone());
            let options =
                ServeOptions { drain_deadline: Duration::from_millis(200), ..ServeOptions::default() };
            let server = TestServer::start(&t.pki, ClientAuth::Optional, app, options).await?;
            let request =
                tokio::spawn(fetch(server.addr, client_config(t.pki.ca_pem(), None, alpn)?, "/slow"));
            entered.notified().await;

            server.stop().await?;
            assert!(request.await?.is_err(), "the stuck request should have lost its connection");
        }
        Ok(())
    })
    .await
}
