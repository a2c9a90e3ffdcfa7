//! The member transport's `Describe` call: what a member says about itself, so that any
//! member can give every member's etcd endpoint in MemberList (`clientURLs`), as etcd does,
//! and `etcdctl endpoint status --cluster` or `flotilla status` can reach each of them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::pb::Blob;
use crate::store::Inner;
use crate::typ::NodeId;

/// A member's answer to `Describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberInfo {
    /// Its raft id.
    pub(crate) id: NodeId,
    /// Where it serves the etcd API (`None`: it does not).
    pub(crate) etcd: Option<SocketAddr>,
}

impl Inner {
    /// The etcd URL of member `id`, whose member transport is at `transport`: this member's
    /// own, or what that member answers to `Describe` within `limit`. `None` when it serves no
    /// etcd API, does not answer in time, or answers as another id.
    pub(crate) async fn etcd_url_of(&self, id: NodeId, transport: &str, limit: Duration) -> Option<String> {
        if id == self.id {
            return self.etcd_addr.map(|etcd| url(etcd, transport));
        }
        let ask = async {
            let mut client = self.transport.client(id, transport).await.ok()?;
            let reply = client.describe(Blob { data: Vec::new() }).await.ok()?;
            let info: MemberInfo = codec::decode(&reply.into_inner().data).ok()?;
            if info.id == id { info.etcd } else { None }
        };
        let etcd = tokio::time::timeout(limit, ask).await.ok().flatten()?;
        Some(url(etcd, transport))
    }
}

/// `http://<ip>:<port>` of an etcd endpoint. A wildcard address (listening on every
/// interface) is given with the host of the member's transport address, which other machines
/// reach it by.
fn url(etcd: SocketAddr, transport: &str) -> String {
    if !etcd.ip().is_unspecified() {
        return format!("http://{etcd}");
    }
    match transport.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => format!("http://{host}:{}", etcd.port()),
        _ => format!("http://{etcd}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_endpoint_takes_the_transport_host() -> Result<(), std::net::AddrParseError> {
        assert_eq!(url("10.0.0.2:2379".parse()?, "10.0.0.2:2380"), "http://10.0.0.2:2379");
        assert_eq!(url("0.0.0.0:2379".parse()?, "10.0.0.7:2380"), "http://10.0.0.7:2379");
        assert_eq!(url("[::]:2379".parse()?, "[fd00::7]:2380"), "http://[fd00::7]:2379");
        assert_eq!(url("0.0.0.0:2379".parse()?, "no-port"), "http://0.0.0.0:2379");
        Ok(())
    }
}
