//! The KV service: Range, Put, DeleteRange, Txn and Compact.

use flotilla_core::store::{ResponseOp, Store as _};
use tonic::{Request, Response, Status};

use super::Ctx;
use super::convert::{
    check_size, delete_request, finish_range, key_range, kv, put_request, range_request, status, txn_request,
};
use super::pb;

pub(crate) struct KvService(pub(crate) Ctx);

impl KvService {
    fn put_response(&self, p: flotilla_core::store::PutResponse) -> pb::PutResponse {
        pb::PutResponse { header: Some(self.0.header(p.header.revision)), prev_kv: p.prev_kv.map(kv) }
    }

    fn delete_response(&self, d: flotilla_core::store::DeleteRangeResponse) -> pb::DeleteRangeResponse {
        pb::DeleteRangeResponse {
            header: Some(self.0.header(d.header.revision)),
            deleted: d.deleted,
            prev_kvs: d.prev_kvs.into_iter().map(kv).collect(),
        }
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for KvService {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = req.into_inner();
        check_size(&r)?;
        if key_range(&r.key, &r.range_end)?.is_none() {
            return Ok(Response::new(pb::RangeResponse {
                header: Some(self.0.header_now()),
                ..Default::default()
            }));
        }
        let resp = self.0.store.range(range_request(&r)?).await.map_err(status)?;
        let header = self.0.header(resp.header.revision);
        Ok(Response::new(finish_range(&r, resp, header)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let r = req.into_inner();
        check_size(&r)?;
        let resp = self.0.store.put(put_request(r)?).await.map_err(status)?;
        Ok(Response::new(self.put_response(resp)))
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let r = req.into_inner();
        check_size(&r)?;
        let Some(del) = delete_request(&r)? else {
            return Ok(Response::new(pb::DeleteRangeResponse {
                header: Some(self.0.header_now()),
                ..Default::default()
            }));
        };
        let resp = self.0.store.delete_range(del).await.map_err(status)?;
        Ok(Response::new(self.delete_response(resp)))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let r = req.into_inner();
        check_size(&r)?;
        let resp = self.0.store.txn(txn_request(&r)?).await.map_err(status)?;
        let branch = if resp.succeeded { &r.success } else { &r.failure };
        let responses = resp
            .responses
            .into_iter()
            .zip(branch)
            .map(|(op, req)| {
                use pb::response_op::Response as R;
                let response = match op {
                    ResponseOp::Range(range) => {
                        let header = self.0.header(range.header.revision);
                        let default = pb::RangeRequest::default();
                        let req = match &req.request {
                            Some(pb::request_op::Request::RequestRange(rr)) => rr,
                            _ => &default,
                        };
                        R::ResponseRange(finish_range(req, range, header))
                    }
                    ResponseOp::Put(p) => R::ResponsePut(self.put_response(p)),
                    ResponseOp::DeleteRange(d) => R::ResponseDeleteRange(self.delete_response(d)),
                };
                pb::ResponseOp { response: Some(response) }
            })
            .collect();
        Ok(Response::new(pb::TxnResponse {
            header: Some(self.0.header(resp.header.revision)),
            succeeded: resp.succeeded,
            responses,
        }))
    }

    async fn compact(
        &self,
        req: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let r = req.into_inner();
        let resp = self.0.store.compact(r.revision).await.map_err(status)?;
        Ok(Response::new(pb::CompactionResponse { header: Some(self.0.header(resp.header.revision)) }))
    }
}
