//! The Lease service: Grant, Revoke, the KeepAlive stream, TimeToLive and Leases.

use std::pin::Pin;

use flotilla_core::store::{Error, Store as _};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Ctx;
use super::convert::status;
use super::pb;

pub(crate) struct LeaseService(pub(crate) Ctx);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::lease_server::Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let r = req.into_inner();
        let g = self.0.store.lease_grant(r.id, r.ttl).await.map_err(status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: Some(self.0.header(g.header.revision)),
            id: g.id,
            ttl: g.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let h = self.0.store.lease_revoke(req.into_inner().id).await.map_err(status)?;
        Ok(Response::new(pb::LeaseRevokeResponse { header: Some(self.0.header(h.revision)) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let ctx = self.0.clone();
        // Requests are answered one at a time, in order; the stream ends when the client
        // closes it or the server stops.
        let out = req.into_inner().take_until(self.0.cancel.clone().cancelled_owned()).then(move |r| {
            let ctx = ctx.clone();
            async move {
                let id = r?.id;
                match ctx.store.lease_keep_alive(id).await {
                    Ok(k) => Ok(pb::LeaseKeepAliveResponse {
                        header: Some(ctx.header(k.header.revision)),
                        id,
                        ttl: k.ttl,
                    }),
                    // etcd answers a keep-alive of an unknown or expired lease with TTL 0.
                    Err(Error::LeaseNotFound(_)) => {
                        Ok(pb::LeaseKeepAliveResponse { header: Some(ctx.header_now()), id, ttl: 0 })
                    }
                    Err(e) => Err(status(e)),
                }
            }
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = req.into_inner();
        match self.0.store.lease_time_to_live(r.id, r.keys).await {
            Ok(t) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(self.0.header(t.header.revision)),
                id: t.id,
                ttl: t.ttl,
                granted_ttl: t.granted_ttl,
                keys: t.keys,
            })),
            // etcd answers TTL -1 for a lease that does not exist (etcdctl: "already expired").
            Err(Error::LeaseNotFound(_)) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(self.0.header_now()),
                id: r.id,
                ttl: -1,
                ..Default::default()
            })),
            Err(e) => Err(status(e)),
        }
    }

    async fn lease_leases(
        &self,
        _req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let ids = self.0.store.lease_leases().await.map_err(status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.0.header_now()),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
