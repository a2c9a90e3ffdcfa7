//! The Cluster service: MemberList, MemberAdd (learners only), MemberRemove and
//! MemberPromote; MemberUpdate is refused.
//!
//! Changes are made by the leader under the rules of `membership.rs`: this member hands each
//! one to its own member transport, which makes it as leader or forwards it to the leader
//! (`join.rs`, [`request_change`]), so every member serves every call.

use openraft::type_config::async_runtime::WatchReceiver as _;
use tonic::{Request, Response, Status};

use super::Ctx;
use super::pb;
use crate::join::request_change;
use crate::membership::{Change, ChangeError, Changed, MemberView, views};

pub(crate) struct ClusterService(pub(crate) Ctx);

/// How long MemberList waits for each member to say where its etcd endpoint is.
const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// The transport address (`host:port`) of MemberAdd's `peerURLs`: exactly one, as
/// `http://host:port` or `host:port`.
fn peer_addr(urls: &[String]) -> Result<String, String> {
    let [url] = urls else { return Err(format!("expected exactly one URL, got {}", urls.len())) };
    let rest = match url.split_once("://") {
        None => url.as_str(),
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!("{url:?}: the member transport speaks plain http, not {scheme}"));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("{url:?} has no port"))?;
    if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
        return Err(format!("{url:?}: {port:?} is not a port"));
    }
    let bracketed = if host.starts_with('[') { host.ends_with(']') } else { !host.contains([':', ']']) };
    let bad_char = host.chars().any(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'));
    if host.is_empty() || !bracketed || bad_char {
        return Err(format!("{url:?}: {host:?} is not a host"));
    }
    Ok(format!("{host}:{port}"))
}

/// The gRPC status for a change that was not made, with etcd's messages where etcd has one.
fn status(e: ChangeError) -> Status {
    match e {
        ChangeError::NotFound(_) => Status::not_found("etcdserver: member not found"),
        ChangeError::NotLearner(_) => {
            Status::failed_precondition("etcdserver: can only promote a learner member")
        }
        e @ ChangeError::NotReady { .. } => Status::failed_precondition(format!(
            "etcdserver: can only promote a learner member which is in sync with leader ({e})"
        )),
        e @ ChangeError::NotEnoughStarted { .. } => Status::failed_precondition(format!(
            "etcdserver: re-configuration failed due to not enough started members ({e})"
        )),
        e @ ChangeError::LastVoter(_) => {
            Status::failed_precondition(format!("etcdserver: re-configuration failed: {e}"))
        }
        ChangeError::Refused(why) => Status::failed_precondition(format!("etcdserver: {why}")),
        ChangeError::Unavailable(why) => {
            Status::unavailable(format!("etcdserver: the membership change was not made: {why}"))
        }
        ChangeError::TimedOut(why) => Status::unavailable(format!("etcdserver: request timed out ({why})")),
    }
}

impl ClusterService {
    /// A member as etcd describes it. Client URLs are known here only for the answering
    /// member (the membership records member transport addresses alone); MemberList asks the
    /// others ([`ClusterService::members_with_urls`]).
    fn member(&self, m: &MemberView) -> pb::Member {
        pb::Member {
            id: m.id,
            name: format!("member-{}", m.id),
            peer_ur_ls: vec![format!("http://{}", m.addr)],
            client_ur_ls: match self.0.store.etcd_addr() {
                Some(addr) if m.id == self.0.store.id() => vec![format!("http://{addr}")],
                _ => Vec::new(),
            },
            is_learner: !m.voter,
        }
    }

    fn members(&self, views: &[MemberView]) -> Vec<pb::Member> {
        views.iter().map(|m| self.member(m)).collect()
    }

    /// The members with every one's client URL, asked of each member over the member
    /// transport (at most [`DESCRIBE_TIMEOUT`], all at once); a member that does not answer
    /// is listed without one, as etcd lists a member that has not started.
    async fn members_with_urls(&self, views: &[MemberView]) -> Vec<pb::Member> {
        let inner = self.0.store.inner();
        let urls = futures::future::join_all(
            views.iter().map(|m| inner.etcd_url_of(m.id, &m.addr, DESCRIBE_TIMEOUT)),
        )
        .await;
        views
            .iter()
            .zip(urls)
            .map(|(m, url)| pb::Member { client_ur_ls: url.into_iter().collect(), ..self.member(m) })
            .collect()
    }

    /// Has the leader make `change`.
    async fn change(&self, change: Change) -> Result<Changed, Status> {
        request_change(self.0.store.local_addr(), change).await.map_err(status)
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let r = req.into_inner();
        let addr = peer_addr(&r.peer_ur_ls).map_err(|why| {
            Status::invalid_argument(format!("etcdserver: given member URLs are invalid: peerURLs: {why}"))
        })?;
        if !r.is_learner {
            return Err(Status::failed_precondition(
                "etcdserver: flotilla adds members as learners only: add the member with isLearner \
                 (etcdctl member add --learner, flotilla member add --learner), start it, then promote it \
                 once it has caught up (member promote); `flotilla server --join` does all three",
            ));
        }
        let changed = self.change(Change::AddLearner(addr.clone())).await?;
        let member = changed
            .member
            .as_ref()
            .ok_or_else(|| Status::internal(format!("etcdserver: no member at {addr} after adding it")))?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.0.header_now()),
            member: Some(self.member(member)),
            members: self.members(&changed.members),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let changed = self.change(Change::Remove(req.into_inner().id)).await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.0.header_now()),
            members: self.members(&changed.members),
        }))
    }

    async fn member_update(
        &self,
        _req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: MemberUpdate is not supported by flotilla: changing a member's address in place \
             can split the cluster when another raft member answers at the new address (the member \
             transport does not check who answers); remove the member and add it again at the new address \
             (it gets a new id and needs an empty data directory)",
        ))
    }

    async fn member_list(
        &self,
        _req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let metrics = self.0.store.raft().metrics().borrow_watched().clone();
        let members = views(metrics.membership_config.membership());
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.0.header_now()),
            members: self.members_with_urls(&members).await,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let changed = self.change(Change::Promote(req.into_inner().id)).await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.0.header_now()),
            members: self.members(&changed.members),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(url: &str) -> Result<String, String> {
        peer_addr(&[url.to_string()])
    }

    #[test]
    fn peer_urls_are_one_plain_http_host_and_port() {
        assert_eq!(one("http://10.0.0.4:2380"), Ok("10.0.0.4:2380".into()));
        assert_eq!(one("10.0.0.4:2380"), Ok("10.0.0.4:2380".into()));
        assert_eq!(one("http://node-4.local:2380/"), Ok("node-4.local:2380".into()));
        assert_eq!(one("http://[::1]:2380"), Ok("[::1]:2380".into()));
        for bad in [
            "https://10.0.0.4:2380",
            "http://10.0.0.4",
            "http://:2380",
            "10.0.0.4:0",
            "a/b:1",
            "h:x",
            "::1:2380",
        ] {
            assert!(one(bad).is_err(), "{bad} accepted");
        }
        assert!(peer_addr(&[]).is_err());
        assert!(peer_addr(&["a:1".into(), "b:1".into()]).is_err());
    }
}
