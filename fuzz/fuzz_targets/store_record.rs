//! The replicated store's record and message decoding: bytes through
//! `flotilla_store_wire::codec::decode` (a format version byte, then bincode) as every type
//! `flotilla-raft-store` reads from its database, its snapshot file or another member.
//!
//! The first byte picks the type: a log entry, the last purged / committed / applied log id,
//! a vote, a stored membership, a snapshot meta, a request, a response, a key version
//! (`VersionRecord`), a lease TTL or revision (`i64`), the database format (`u32`), an MVCC
//! snapshot, and the member transport's messages (AppendEntries and Vote requests and
//! answers, the snapshot header `(Vote, SnapshotMeta)` and its answer, a leader's
//! TransferLeader request and its answer). The rest is the encoded value.
//!
//! Properties: nothing panics; decoding allocates little more than its input (libFuzzer's
//! `-malloc_limit_mb` catches a length prefix that is trusted); a value that decodes
//! re-encodes to bytes no longer than its input, which decode to the same value and encode
//! the same again.
#![no_main]

use std::fmt::Debug;

use flotilla_core::store::{MvccSnapshot, VersionRecord};
use flotilla_store_wire::{
    AppendEntriesRequest, AppendEntriesResponse, Entry, LogId, RaftError, Request, Response, SnapshotMeta,
    SnapshotResponse, StoredMembership, TransferLeaderRequest, TransferLeaderResponse, Vote, VoteRequest,
    VoteResponse, codec,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn check<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) {
    let Ok(value) = codec::decode::<T>(bytes) else { return };
    let name = std::any::type_name::<T>();
    let encoded = codec::encode(&value).expect("a decoded value encodes");
    // Fixed-width bincode has one encoding per value, except what a type ignores on read
    // (trailing bytes, openraft's always-empty `snapshot_id` in a snapshot meta).
    assert!(encoded.len() <= bytes.len(), "{name}: {} bytes re-encode as {}", bytes.len(), encoded.len());
    let again: T = codec::decode(&encoded)
        .unwrap_or_else(|e| panic!("{name}: {value:?} re-encoded does not decode: {e}"));
    assert_eq!(format!("{again:?}"), format!("{value:?}"), "{name}: round trip changed the value");
    assert_eq!(codec::encode(&again).expect("encodes"), encoded, "{name}: encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 19 {
        0 => check::<Entry>(body),
        1 => check::<Option<LogId>>(body),
        2 => check::<Vote>(body),
        3 => check::<StoredMembership>(body),
        4 => check::<SnapshotMeta>(body),
        5 => check::<Request>(body),
        6 => check::<Response>(body),
        7 => check::<VersionRecord>(body),
        8 => check::<i64>(body),
        9 => check::<u32>(body),
        10 => check::<MvccSnapshot>(body),
        11 => check::<AppendEntriesRequest>(body),
        12 => check::<Result<AppendEntriesResponse, RaftError>>(body),
        13 => check::<VoteRequest>(body),
        14 => check::<Result<VoteResponse, RaftError>>(body),
        15 => check::<(Vote, SnapshotMeta)>(body),
        17 => check::<TransferLeaderRequest>(body),
        18 => check::<Result<TransferLeaderResponse, RaftError>>(body),
        _ => check::<Result<SnapshotResponse, String>>(body),
    }
});
