//! Format fixtures: one sample of every record, encoded by a build that wrote the format and
//! checked in as hex (`tests/fixtures/format-1.txt` here, with the records this crate
//! defines; `flotilla-raft-store` keeps its own records in its own fixture).
//!
//! The check fails when today's build encodes any sample differently, or decodes the
//! checked-in bytes to anything but the sample: a change of a persisted type, of its serde
//! attributes, of bincode's settings or of openraft's types shows up here, and must come with
//! a new format version (and a migration), not a silently different encoding of the old one.
//!
//! Regenerate a file only when bumping the format: `FLOTILLA_BLESS_FIXTURES=1 cargo test -p
//! <crate> fixture`, and keep the old one under a new name.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{decode, encode};

/// One sample record: its name in the fixture, its encoding by this build, and a check that
/// decodes bytes back to its type and says whether they mean the sample.
pub type Sample = (&'static str, Vec<u8>, Box<dyn Fn(&[u8]) -> Result<(), String>>);

/// The [`Sample`] of `value`, named `name`. Values compare by their `Debug` form, which
/// every record has (openraft's do not all implement `PartialEq`).
pub fn sample<T: Serialize + DeserializeOwned + Debug + 'static>(name: &'static str, value: T) -> Sample {
    let bytes = encode(&value).expect("samples encode");
    let want = format!("{value:?}");
    let check = move |b: &[u8]| match decode::<T>(b) {
        Ok(got) if format!("{got:?}") == want => Ok(()),
        Ok(got) => Err(format!("decoded to {got:?}, expected {want}")),
        Err(e) => Err(format!("does not decode: {e}")),
    };
    (name, bytes, Box::new(check))
}

/// Checks every sample against the fixture at `path` (lines of `<name> <hex>`; lines no
/// sample names are ignored), and panics naming each one that changed. With
/// `FLOTILLA_BLESS_FIXTURES` set, writes the samples to `path` first.
pub fn check_fixture(path: &Path, samples: &[Sample]) {
    if std::env::var_os("FLOTILLA_BLESS_FIXTURES").is_some() {
        let text: String = samples.iter().map(|(n, b, _)| format!("{n} {}\n", hex::encode(b))).collect();
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("creates the fixture dir");
        std::fs::write(path, text).expect("writes the fixture");
    }
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (see this module's docs to create it)", path.display()));
    let fixture: BTreeMap<&str, Vec<u8>> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, h)| (n, hex::decode(h.trim()).unwrap_or_else(|e| panic!("fixture line {n}: {e}"))))
        .collect();
    let mut failures = Vec::new();
    for (name, bytes, check) in samples {
        let Some(stored) = fixture.get(name) else {
            failures.push(format!("{name}: missing from the fixture"));
            continue;
        };
        if stored != bytes {
            failures.push(format!(
                "{name}: encodes as {} but the fixture has {}",
                hex::encode(bytes),
                hex::encode(stored)
            ));
        }
        if let Err(e) = check(stored) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} changed:\n{}", path.display(), failures.join("\n"));
}

/// The log id of the samples: `term`, leader `node`, `index`.
pub fn log_id(term: u64, node: u64, index: u64) -> crate::LogId {
    openraft::testing::log_id::<crate::TypeConfig>(term, node, index)
}

/// The membership of the samples: voters 1 to 3, and member 4 a learner.
pub fn membership() -> openraft::Membership<u64, openraft::BasicNode> {
    let voters = std::collections::BTreeSet::from([1, 2, 3]);
    let nodes = (1..=4u64).map(|id| (id, openraft::BasicNode::new(format!("127.0.0.1:738{id}"))));
    openraft::Membership::new(vec![voters], nodes.collect::<BTreeMap<_, _>>()).expect("a valid membership")
}

/// The key version of the samples: key `k` at revision 42.1, value `v`, lease 7.
pub fn put_record() -> flotilla_core::store::VersionRecord {
    flotilla_core::store::VersionRecord {
        key: b"k".to_vec(),
        main: 42,
        sub: 1,
        data: Some(flotilla_core::store::VersionData {
            create_revision: 3,
            version: 4,
            value: b"v".to_vec(),
            lease: 7,
        }),
    }
}

/// The write result of the samples: a transaction at revision 42 whose one put returned the
/// previous value of [`put_record`]'s key.
pub fn txn_result() -> flotilla_core::store::CommandResult {
    use flotilla_core::store::{KeyValue, PutResponse, ResponseHeader, ResponseOp, TxnResponse};
    let kv = KeyValue {
        key: b"k".to_vec(),
        create_revision: 3,
        mod_revision: 42,
        version: 4,
        value: b"v".to_vec(),
        lease: 7,
    };
    flotilla_core::store::CommandResult::Txn(TxnResponse {
        header: ResponseHeader { revision: 42 },
        succeeded: true,
        responses: vec![ResponseOp::Put(PutResponse {
            header: ResponseHeader { revision: 42 },
            prev_kv: Some(kv),
        })],
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use flotilla_core::store::{
        Command, Compare, CompareOp, DeleteRangeRequest, Error as StoreError, KeyRange, PutRequest,
        RequestOp, TxnRequest, VersionRecord,
    };
    use openraft::entry::RaftEntry;

    use super::{Sample, check_fixture, log_id, membership, put_record, sample, txn_result};
    use crate::{Entry, Request, Response, StoredMembership, Vote};

    fn txn() -> TxnRequest {
        let mut put = PutRequest::new("/registry/pods/default/web", b"{\"kind\":\"Pod\"}".to_vec());
        put.lease = 7;
        put.prev_kv = true;
        TxnRequest {
            compare: vec![
                Compare::mod_revision("/registry/pods/default/web", CompareOp::Equal, 41),
                Compare::value("k", CompareOp::Greater, b"v".to_vec()),
            ],
            success: vec![RequestOp::Put(put)],
            failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::prefix("a/"),
                prev_kv: false,
            })],
        }
    }

    fn samples() -> Vec<Sample> {
        let normal = Entry::new_normal(log_id(3, 2, 18), Request { cmd: Command::Txn(txn()) });
        let member_entry = Entry::new_membership(log_id(1, 1, 1), membership());
        let stored = StoredMembership::new(Some(log_id(1, 1, 1)), membership());
        let tombstone = VersionRecord { key: b"k".to_vec(), main: 43, sub: 0, data: None };
        vec![
            sample("vote", Vote::new_committed(3, 2)),
            sample("log_id", Some(log_id(3, 2, 17))),
            sample("entry_blank", Entry::new_blank(log_id(2, 1, 5))),
            sample("entry_normal", normal),
            sample("entry_membership", member_entry),
            sample("stored_membership", stored),
            sample("version_record", put_record()),
            sample("version_tombstone", tombstone),
            sample("lease_ttl", 60i64),
            sample("revision", 42i64),
            sample("response", Response { result: Some(Ok(txn_result())) }),
            sample("response_error", Response { result: Some(Err(StoreError::LeaseNotFound(7))) }),
        ]
    }

    #[test]
    fn format_1_fixture_encodes_and_decodes_unchanged() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1.txt");
        check_fixture(&path, &samples());
    }
}
