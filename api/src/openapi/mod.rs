//! OpenAPI documents: what kubectl reads from `/openapi/v3` (and `/openapi/v2`) to decide how
//! to validate and patch. Built by [`OpenApi::new`] from the [`Discovery`] documents, so every
//! kind in the registry, built-in or not, is described the same way; served by
//! [`discovery::routes`](crate::discovery::routes).
//!
//! The documents describe *operations* (paths, verbs, query parameters, the GVK each operation
//! takes) and deliberately no object *schemas*. What kubectl v1.32 does with them:
//!
//! # Server-side field validation (`kubectl apply/create/replace --validate=strict`, the default)
//!
//! kubectl asks whether the server supports the `fieldValidation` query parameter for the
//! object's GVK (kubectl v0.32 `pkg/cmd/util/factory_client_access.go`, `Validator`): the
//! primary verifier reads the OpenAPI v3 document of the GVK's group-version (the `paths`
//! entry `api/v1` or `apis/<group>/<version>` of `/openapi/v3`), takes the first `PATCH`
//! operation whose `x-kubernetes-group-version-kind` is the GVK and looks for a parameter named
//! `fieldValidation` with `in: query` (cli-runtime v0.32 `pkg/resource/query_param_verifier_v3.go`,
//! `supportsQueryParamV3`). Paths are a map, so whichever PATCH operation of the GVK comes first
//! decides: every PATCH operation here, subresources included, declares `fieldValidation`.
//!
//! - Supported: kubectl skips client-side validation; the server validates (kubectl sends
//!   `fieldValidation=Strict` on every write in any case: `resource.Helper.WithFieldValidation`
//!   in `pkg/cmd/apply/apply.go`).
//! - Any other error (no document, no PATCH for the GVK) falls back to the OpenAPI v2 verifier
//!   (`pkg/resource/fallback_query_param_verifier.go`), and an "unsupported" answer makes
//!   kubectl validate client-side against the OpenAPI v2 schemas
//!   (kubectl `pkg/validation/schema.go`, `validation.go`). If `/openapi/v2` could not be
//!   downloaded either, `kubectl apply` would refuse the object ("error validating data").
//!
//! # `/openapi/v2`: an empty document, not a 404
//!
//! A `kind: List` manifest is never checked for server-side support (the verifier answers
//! "unsupported" for `v1/List` by definition) and is validated client-side against OpenAPI v2
//! at once. So that `kubectl apply -f list.yaml` works, `/openapi/v2` serves a valid document
//! with no definitions (protobuf, as client-go asks for it, or JSON): kubectl finds no schema
//! for the items' kinds and skips client-side validation ("resource is not present, let's
//! just skip validation"), while the server still validates each item (`fieldValidation=Strict`).
//! kubectl's v2 patch path (below) finds no `PATCH` consumes for the GVK and moves on.
//!
//! # Client-side `kubectl apply`: why no schemas
//!
//! When the object exists, `kubectl apply` computes a three-way patch (kubectl v0.32
//! `pkg/cmd/apply/patcher.go`, `patchSimple`), trying in order:
//!
//! 1. OpenAPI v3: if the GVK's `PATCH` operation lists `application/strategic-merge-patch+json`
//!    in its request body (`gvkSupportsPatchOpenAPIV3`), kubectl builds a strategic merge patch
//!    from the `components.schemas` entry whose `x-kubernetes-group-version-kind` names the GVK,
//!    taking merge keys and strategies from `x-kubernetes-patch-merge-key` and
//!    `x-kubernetes-patch-strategy` (`buildStrategicMergePatchFromOpenAPIV3`).
//! 2. OpenAPI v2, the same from `/openapi/v2` definitions.
//! 3. kubectl's compiled-in Go types (`buildStrategicMergeFromBuiltins`) for kinds it knows,
//!    else a JSON merge patch (`buildMergePatch`) for kinds it does not.
//!
//! A schema without the merge keys would make step 1 replace lists wholesale (a pod's
//! `containers` by a patch naming only the changed container). Full schemas for the built-in
//! kinds are not available here (`k8s-openapi` ships no OpenAPI), so the `PATCH` operations
//! declare JSON patch, merge patch and apply patch but not strategic merge patch, and no schema
//! carries a GVK: steps 1 and 2 find nothing and kubectl uses its compiled-in types, the same
//! strategic merge patch a real cluster receives for built-in kinds. User kinds get a JSON merge
//! patch, as custom resources do on a real cluster.
//!
//! # `kubectl explain`
//!
//! Unsupported: it renders the kind's schema from the v3 document and, finding none, fails
//! with `couldn't find resource for "<gvr>"`.
//!
//! # Caching
//!
//! Each group-version document is named in the index with `?hash=` of its content (uppercase
//! hex SHA-256), as kube-openapi's `handler3` does; a request with that hash may be cached
//! forever, a request with an old hash is redirected to the current one.

mod paths;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::discovery::{Discovery, GIT_VERSION};

/// The title every document carries, as kube-apiserver's do.
const TITLE: &str = "Kubernetes";

/// One group-version's OpenAPI v3 document.
#[derive(Clone, Debug)]
pub struct GroupVersionDocument {
    path: String,
    hash: String,
    json: Bytes,
}

impl GroupVersionDocument {
    /// The document's key in the index: `api/v1` or `apis/<group>/<version>`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The content hash (uppercase hex SHA-256 of [`json`](Self::json)).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The document, as JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// Where the index says to fetch it: `/openapi/v3/<path>?hash=<hash>`.
    pub fn server_relative_url(&self) -> String {
        format!("/openapi/v3/{}?hash={}", self.path, self.hash)
    }
}

/// Every OpenAPI document of one server.
#[derive(Clone, Debug)]
pub struct OpenApi {
    index: Bytes,
    documents: BTreeMap<String, GroupVersionDocument>,
    v2_json: Bytes,
    v2_protobuf: Bytes,
}

impl OpenApi {
    /// Computes the documents of every group-version `discovery` lists.
    ///
    /// ```
    /// use flotilla_api::discovery::Discovery;
    /// use flotilla_api::openapi::OpenApi;
    /// use flotilla_core::object::KindRegistry;
    ///
    /// let openapi = OpenApi::new(&Discovery::new(&KindRegistry::builtin()));
    /// assert!(openapi.document("apis/apps/v1").is_some());
    /// ```
    pub fn new(discovery: &Discovery) -> Self {
        let mut documents = BTreeMap::new();
        for (group, version, list) in discovery.resource_lists() {
            let mut p = Map::new();
            paths::add_paths(group, version, list, &mut p);
            let doc = json!({
                "openapi": "3.0.0",
                "info": { "title": TITLE, "version": GIT_VERSION },
                "paths": p,
            });
            let json = Bytes::from(serde_json::to_vec(&doc).expect("a JSON value always serializes"));
            let path = paths::prefix(group, version).trim_start_matches('/').to_string();
            let hash = hex_upper(&Sha256::digest(&json));
            documents.insert(path.clone(), GroupVersionDocument { path, hash, json });
        }
        let index: Map<String, Value> = documents
            .values()
            .map(|d| (d.path.clone(), json!({ "serverRelativeURL": d.server_relative_url() })))
            .collect();
        let index = serde_json::to_vec(&json!({ "paths": index })).expect("a JSON value always serializes");
        let v2 = json!({ "swagger": "2.0", "info": { "title": TITLE, "version": GIT_VERSION }, "paths": {} });
        OpenApi {
            index: Bytes::from(index),
            documents,
            v2_json: Bytes::from(serde_json::to_vec(&v2).expect("a JSON value always serializes")),
            v2_protobuf: Bytes::from(v2_protobuf()),
        }
    }

    /// `/openapi/v3`: `{"paths": {"<path>": {"serverRelativeURL": "..."}}}`.
    pub fn index(&self) -> &Bytes {
        &self.index
    }

    /// The document at `path` (`api/v1`, `apis/apps/v1`), if the server has that group-version.
    pub fn document(&self, path: &str) -> Option<&GroupVersionDocument> {
        self.documents.get(path)
    }

    /// Every group-version document.
    pub fn documents(&self) -> impl Iterator<Item = &GroupVersionDocument> {
        self.documents.values()
    }

    /// `/openapi/v2` as JSON: a Swagger 2.0 document with no paths or definitions.
    pub fn v2_json(&self) -> &Bytes {
        &self.v2_json
    }

    /// `/openapi/v2` as protobuf (gnostic's `openapi.v2.Document`, what client-go asks for).
    pub fn v2_protobuf(&self) -> &Bytes {
        &self.v2_protobuf
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// A protobuf length-delimited field.
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// `openapi.v2.Document{swagger: "2.0", info: {title, version}}` in protobuf (field numbers of
/// gnostic-models `openapiv2/OpenAPIv2.proto`: Document.swagger 1, Document.info 2,
/// Info.title 1, Info.version 2).
fn v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    field(&mut info, 1, TITLE.as_bytes());
    field(&mut info, 2, GIT_VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

#[cfg(test)]
mod tests;
