//! The server's request decoding, reachable from the cargo-fuzz targets in `fuzz/`: thin
//! wrappers over crate-private functions, each doing exactly what a request handler does with
//! the same input.
//!
//! For fuzz targets; not a stable API. Nothing else should use it.

use flotilla_core::object::DynamicObject;
use flotilla_core::patch::PatchType;
use flotilla_core::registry::{DeleteOptions, GetOptions, ListOptions, WriteOptions};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

pub use super::body::Format;
pub use super::path::Target;
use super::query::Query;
pub use super::respond::{IncludeObject, Output};
use super::{Result, body, path, protobuf, resources, respond};

/// The media type of a request body, from its `Content-Type` header.
pub fn body_format(headers: &HeaderMap) -> Result<Format> {
    body::format(headers)
}

/// The object in a create or update body.
pub fn decode_object(bytes: &[u8], format: Format) -> Result<DynamicObject> {
    body::object(bytes, format)
}

/// Any other document body (Binding, Eviction, Scale, TokenRequest, reviews); `what` names it
/// in errors.
pub fn decode_document<T: for<'de> Deserialize<'de>>(bytes: &[u8], format: Format, what: &str) -> Result<T> {
    body::document(bytes, format, what)
}

/// A DELETE body merged into the options `query` gave.
pub fn decode_delete_options(bytes: &[u8], format: Format, query: DeleteOptions) -> Result<DeleteOptions> {
    body::delete_options(bytes, format, query)
}

/// A protobuf body (`k8s\0` envelope) as the JSON the rest of the server sees.
pub fn protobuf_to_json(bytes: &[u8]) -> Result<Value> {
    protobuf::to_json(bytes)
}

/// What a resource path (after `/api/v1/` or `/apis/<group>/<version>/`) addresses.
pub fn parse_path(rest: &str) -> Option<Target> {
    path::parse(rest)
}

/// Every option a handler reads from a query string, each parsed as its handler parses it.
#[derive(Debug)]
pub struct QueryOptions {
    /// `watch`.
    pub watch: Result<bool>,
    /// What a get reads.
    pub get: GetOptions,
    /// What a list, watch or deletecollection reads.
    pub list: Result<ListOptions>,
    /// `timeoutSeconds` of a watch.
    pub timeout_seconds: Result<Option<u64>>,
    /// What a create, update or patch reads.
    pub write: Result<WriteOptions>,
    /// What a delete reads from the query (before its body).
    pub delete: Result<DeleteOptions>,
}

/// Parses a raw (percent-encoded) query string as the handlers do.
pub fn query_options(raw: Option<&str>) -> QueryOptions {
    let q = Query::parse(raw);
    QueryOptions {
        watch: q.is_watch(),
        get: q.get_options(),
        list: q.list_options(),
        timeout_seconds: q.timeout_seconds(),
        write: q.write_options(),
        delete: q.delete_options(),
    }
}

/// The response form a request's `Accept` header (and `includeObject`) asks for.
pub fn negotiate(headers: &HeaderMap, raw_query: Option<&str>) -> Result<Output> {
    respond::negotiate(headers, &Query::parse(raw_query))
}

/// The patch type a PATCH request's `Content-Type` names.
pub fn patch_type(headers: &HeaderMap) -> Result<PatchType> {
    resources::patch_type(headers)
}
