//! Request, response and record types of the store contract.
//!
//! They follow etcd v3's `KeyValue`, `RangeRequest`, `TxnRequest`, `WatchRequest` and lease
//! messages closely, so that an etcd-compatible endpoint is a thin translation and a reader who
//! knows etcd knows these.

use serde::{Deserialize, Serialize};

/// A store revision: one per write transaction, starting at 1 for the first write.
pub type Revision = i64;

/// A lease identifier; `0` means "no lease".
pub type LeaseId = i64;

/// The largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// The largest value, in bytes (etcd's default request limit is 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;
/// The most operations a transaction may hold, across its success and failure branches and
/// its compares each counted separately (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;
/// The longest lease TTL, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL_SECS: i64 = 9_000_000_000;

/// One version of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KeyValue {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// The revision of the write that produced this version.
    pub mod_revision: Revision,
    /// How many times the key was written since it was created; 1 for a new key.
    pub version: i64,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The lease the key is attached to, or 0.
    pub lease: LeaseId,
}

/// The header every response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ResponseHeader {
    /// The store revision when the request was served (after it, for a write).
    pub revision: Revision,
}

/// Which keys a request covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRange {
    /// Exactly one key.
    Key(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Every key starting with the prefix (an empty prefix is every key).
    Prefix(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Keys in `[start, end)`; an empty `end` means "no upper bound".
    Range {
        /// First key included.
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        /// First key excluded; empty for no upper bound.
        #[serde(with = "serde_bytes")]
        end: Vec<u8>,
    },
}

impl KeyRange {
    /// A range of one key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        KeyRange::Key(key.into())
    }

    /// Every key with this prefix.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        KeyRange::Prefix(prefix.into())
    }

    /// Keys in `[start, end)`; an empty `end` is unbounded.
    pub fn range(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange::Range { start: start.into(), end: end.into() }
    }

    /// The inclusive start and the exclusive end (`None` when unbounded) of the range.
    pub fn bounds(&self) -> (&[u8], Option<Vec<u8>>) {
        match self {
            KeyRange::Key(k) => {
                let mut end = k.clone();
                end.push(0);
                (k, Some(end))
            }
            KeyRange::Prefix(p) => (p, prefix_end(p)),
            KeyRange::Range { start, end } => (start, if end.is_empty() { None } else { Some(end.clone()) }),
        }
    }

    /// Whether `key` lies inside the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Key(k) => k == key,
            KeyRange::Prefix(p) => key.starts_with(p),
            KeyRange::Range { start, end } => {
                key >= start.as_slice() && (end.is_empty() || key < end.as_slice())
            }
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &[u8] {
        match self {
            KeyRange::Key(k) | KeyRange::Prefix(k) => k,
            KeyRange::Range { start, .. } => start,
        }
    }
}

/// The smallest key greater than every key with `prefix`, or `None` when there is none
/// (an empty prefix, or one of only `0xff` bytes).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Read keys, now or at a past revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    /// Keys to read.
    pub range: KeyRange,
    /// Revision to read at; 0 (or less) reads the current revision.
    pub revision: Revision,
    /// Most key-values to return; 0 is no limit.
    pub limit: i64,
    /// Return only the count (and `more`), no key-values.
    pub count_only: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Serve from this member's state without confirming it is current (raft stores only;
    /// the default is a linearizable read).
    pub serializable: bool,
}

impl RangeRequest {
    /// A linearizable read of the current revision, with no limit.
    pub fn new(range: KeyRange) -> Self {
        RangeRequest {
            range,
            revision: 0,
            limit: 0,
            count_only: false,
            keys_only: false,
            serializable: false,
        }
    }

    /// Read at `revision` instead.
    pub fn at(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// Return at most `limit` key-values.
    pub fn limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
}

/// The result of a range read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RangeResponse {
    /// Header; `revision` is the store revision the read observed.
    pub header: ResponseHeader,
    /// Key-values in key order (empty with `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than `limit` allowed.
    pub more: bool,
    /// How many keys matched in all, regardless of `limit`.
    pub count: i64,
}

/// Write one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PutRequest {
    /// The key; must not be empty.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The new value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The lease to attach the key to, or 0.
    pub lease: LeaseId,
    /// Return the key-value as it was before the write.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

impl PutRequest {
    /// A put of `value` at `key`.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutRequest { key: key.into(), value: value.into(), ..Default::default() }
    }
}

/// The result of a put.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PutResponse {
    /// Header; `revision` is the revision of this write.
    pub header: ResponseHeader,
    /// The previous key-value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Delete one key or a range of keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    /// Keys to delete.
    pub range: KeyRange,
    /// Return the deleted key-values.
    pub prev_kv: bool,
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeleteRangeResponse {
    /// Header; `revision` is the revision of this write (unchanged when nothing was deleted).
    pub header: ResponseHeader,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// What a compare looks at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    CreateRevision(Revision),
    /// The key's mod revision (0 when absent).
    ModRevision(Revision),
    /// The key's value (an absent key fails every value compare).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The key's lease (0 when absent or unleased).
    Lease(LeaseId),
}

/// How a compare relates the key's field to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// Equal.
    Equal,
    /// Not equal.
    NotEqual,
    /// The field is greater than the target.
    Greater,
    /// The field is less than the target.
    Less,
}

/// One guard of a transaction; over a range, every key in it must satisfy the compare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key (or keys) compared.
    pub range: KeyRange,
    /// The relation.
    pub op: CompareOp,
    /// The field and the value it is compared with.
    pub target: CompareTarget,
}

impl Compare {
    /// `key`'s mod revision equals `revision` (0: the key does not exist).
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: Revision) -> Self {
        Compare { range: KeyRange::Key(key.into()), op, target: CompareTarget::ModRevision(revision) }
    }

    /// `key`'s version compared with `version` (0: the key does not exist).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Compare { range: KeyRange::Key(key.into()), op, target: CompareTarget::Version(version) }
    }

    /// `key`'s create revision compared with `revision`.
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: Revision) -> Self {
        Compare { range: KeyRange::Key(key.into()), op, target: CompareTarget::CreateRevision(revision) }
    }

    /// `key`'s value compared with `value`.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Compare { range: KeyRange::Key(key.into()), op, target: CompareTarget::Value(value.into()) }
    }

    /// `key` exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Self::create_revision(key, CompareOp::Greater, 0)
    }

    /// `key` does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self::create_revision(key, CompareOp::Equal, 0)
    }
}

/// One operation inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    /// A read, at the transaction's revision.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
}

/// The result of one transaction operation, in the order of the request's operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseOp {
    /// The result of a read.
    Range(RangeResponse),
    /// The result of a put.
    Put(PutResponse),
    /// The result of a delete.
    DeleteRange(DeleteRangeResponse),
}

/// Compare, then apply one branch, atomically and at one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnRequest {
    /// Guards; the transaction succeeds when all hold (an empty list holds).
    pub compare: Vec<Compare>,
    /// Operations applied when the guards hold.
    pub success: Vec<RequestOp>,
    /// Operations applied when they do not.
    pub failure: Vec<RequestOp>,
}

/// The result of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TxnResponse {
    /// Header; `revision` is the revision after the transaction (bumped once if it wrote).
    pub header: ResponseHeader,
    /// Whether the guards held.
    pub succeeded: bool,
    /// The results of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    /// The key was written.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Put or delete.
    pub kind: EventType,
    /// The key-value after the change; for a delete, the key with `mod_revision` set to the
    /// deleting revision and everything else zero.
    pub kv: KeyValue,
    /// The key-value before the change, when the watch asked for it and there was one.
    pub prev_kv: Option<KeyValue>,
}

/// Follow changes to a key, a prefix or a range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Keys to follow.
    pub range: KeyRange,
    /// First revision to deliver; 0 means "changes after now".
    pub start_revision: Revision,
    /// Include each event's previous key-value.
    pub prev_kv: bool,
    /// Send progress notifications (an empty response carrying the current revision)
    /// while the watch is idle and caught up.
    pub progress_notify: bool,
}

impl WatchRequest {
    /// A watch of `range` for changes after now.
    pub fn new(range: KeyRange) -> Self {
        WatchRequest { range, start_revision: 0, prev_kv: false, progress_notify: false }
    }

    /// Start at `revision` instead.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = revision;
        self
    }
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WatchResponse {
    /// Header; for events, the revision of the last event; for progress, the store revision.
    pub header: ResponseHeader,
    /// Events in revision order (all events of one revision are in one response); empty for
    /// a progress notification.
    pub events: Vec<Event>,
    /// Set on the progress notification that answers
    /// [`ProgressHandle::request`](super::ProgressHandle::request) (rather than a periodic one).
    #[serde(default)]
    pub requested: bool,
}

impl WatchResponse {
    /// Whether this is a progress notification rather than events.
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty()
    }
}

/// The result of granting a lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaseGrantResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The lease's id.
    pub id: LeaseId,
    /// The granted TTL, in seconds.
    pub ttl: i64,
}

/// The result of a keep-alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaseKeepAliveResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The lease's id.
    pub id: LeaseId,
    /// The TTL the lease was renewed to, in seconds.
    pub ttl: i64,
}

/// What a lease looks like now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LeaseTimeToLiveResponse {
    /// Header.
    pub header: ResponseHeader,
    /// The lease's id.
    pub id: LeaseId,
    /// Seconds left before it expires, rounded up.
    pub ttl: i64,
    /// The TTL it was granted with.
    pub granted_ttl: i64,
    /// The keys attached to it, when asked for, in key order.
    pub keys: Vec<Vec<u8>>,
}

/// One lease in a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// The lease's id.
    pub id: LeaseId,
}

/// The result of a compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CompactResponse {
    /// Header.
    pub header: ResponseHeader,
}
