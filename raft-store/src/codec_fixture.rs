//! The format-1 fixture of the records this crate defines (the database layout version, the
//! forwarded requests and answers, the snapshot blob), encoded by a build that wrote format 1
//! and checked in as hex (`tests/fixtures/format-1.txt`). The records of `flotilla-store-wire`
//! (log entries, votes, memberships, versions, responses) are checked by its own fixture; the
//! lines for them here are the same bytes, kept as format 1 was first written.
//!
//! The check (`flotilla_store_wire::codec::fixture`) fails when today's build encodes any
//! sample differently, or decodes the checked-in bytes to anything but the sample; such a
//! change must come with a new format version (and a migration). Regenerate the file only
//! when bumping the format: `FLOTILLA_BLESS_FIXTURES=1 cargo test -p flotilla-raft-store
//! fixture`, and keep the old one under a new name.

use std::path::PathBuf;

use flotilla_core::store::Command;
use flotilla_store_wire::codec::fixture::{
    Sample, check_fixture, log_id, membership, put_record, sample, txn_result,
};

use super::encode;
use crate::forward::{ForwardRequest, ForwardResponse};
use crate::snapshot::SnapshotBlob;
use crate::typ::{SnapshotMeta, StoredMembership};

fn samples() -> Vec<Sample> {
    let stored = StoredMembership::new(Some(log_id(1, 1, 1)), membership());
    let blob = SnapshotBlob {
        meta: SnapshotMeta { last_log_id: Some(log_id(3, 2, 18)), last_membership: stored },
        records: vec![crate::snapshot::Record {
            cf: 0,
            key: b"k".to_vec(),
            value: encode(&put_record()).expect("encodes"),
        }],
    };
    vec![
        sample("db_format", crate::db::DB_FORMAT),
        sample("forward_write", ForwardRequest::Write(Command::LeaseGrant { id: 7, ttl: 60 })),
        sample("forward_read_index", ForwardRequest::ReadIndex),
        sample("forward_written", ForwardResponse::Write(Ok(txn_result()), 18)),
        sample("forward_not_leader", ForwardResponse::NotLeader),
        sample("snapshot_blob", blob),
    ]
}

#[test]
fn format_1_fixture_encodes_and_decodes_unchanged() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1.txt");
    check_fixture(&path, &samples());
}
