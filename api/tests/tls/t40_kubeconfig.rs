//! An admin kubeconfig written, read back and used to connect.

use std::os::unix::fs::PermissionsExt;

use flotilla_api::kubeconfig::{DEFAULT_NAMESPACE, Kubeconfig};
use flotilla_api::pki::ClientAuth;
use flotilla_api::tls::ServeOptions;

use crate::support::{HTTP2, TestPki, TestServer, client_config, fetch, whoami_router, within};

#[tokio::test]
async fn admin_kubeconfig_round_trips_and_authenticates() -> anyhow::Result<()> {
    within("request with kubeconfig credentials", 30, async {
        let t = TestPki::new()?;
        let server =
            TestServer::start(&t.pki, ClientAuth::Optional, whoami_router(), ServeOptions::default()).await?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join(".kube/config");
        let url = format!("https://127.0.0.1:{}", server.addr.port());
        Kubeconfig::for_admin("flotilla", &url, &t.pki).write(&path)?;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);

        let loaded = Kubeconfig::load(&path)?;
        assert_eq!(loaded.current_context, "flotilla-admin@flotilla");
        let current = loaded.current()?;
        assert_eq!(current.server.as_str(), format!("{url}/"));
        assert_eq!(current.namespace, DEFAULT_NAMESPACE);
        assert_eq!(current.ca_pem.as_deref(), Some(t.pki.ca_pem().as_bytes()));
        let identity = current.client_certificate.expect("admin kubeconfig has a client certificate");
        assert_eq!(current.token, None);

        let (cert, key) = (String::from_utf8(identity.cert_pem)?, String::from_utf8(identity.key_pem)?);
        let ca = String::from_utf8(current.ca_pem.unwrap_or_default())?;
        let reply = fetch(server.addr, client_config(&ca, Some((&cert, &key)), HTTP2)?, "/whoami").await?;
        assert!(reply.body.starts_with("user=flotilla-admin groups=system:masters "), "{}", reply.body);
        server.stop().await
    })
    .await
}
