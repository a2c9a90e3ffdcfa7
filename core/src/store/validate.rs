//! Checks on requests that need no state: sizes, emptiness, counts and duplicates.
//!
//! Every store runs these before a write is proposed, so bad input is rejected with a message
//! naming the field and never reaches a log.

use std::collections::BTreeSet;

use super::error::{Error, Problem, Result};
use super::mvcc::Command;
use super::types::{
    KeyRange, MAX_KEY_BYTES, MAX_LEASE_TTL_SECS, MAX_TXN_OPS, MAX_VALUE_BYTES, RangeRequest, RequestOp,
    TxnRequest,
};

/// Checks a command before it is proposed; the error names the offending field.
pub fn validate_command(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Txn(txn) => validate_txn(txn),
        Command::Compact(rev) if *rev <= 0 => {
            Err(Error::invalid("compact.revision", format!("must be positive, got {rev}")))
        }
        Command::Compact(_) => Ok(()),
        Command::LeaseGrant { id, ttl } => {
            if *id <= 0 {
                return Err(Error::invalid("lease.id", format!("must be positive, got {id}")));
            }
            validate_ttl(*ttl)
        }
        Command::LeaseRevoke { id } if *id <= 0 => {
            Err(Error::invalid("lease.id", format!("must be positive, got {id}")))
        }
        Command::LeaseRevoke { .. } => Ok(()),
    }
}

/// Checks a lease TTL in seconds.
pub(crate) fn validate_ttl(ttl: i64) -> Result<()> {
    if ttl <= 0 || ttl > MAX_LEASE_TTL_SECS {
        return Err(Error::invalid(
            "lease.ttl",
            format!("must be in 1..={MAX_LEASE_TTL_SECS} seconds, got {ttl}"),
        ));
    }
    Ok(())
}

/// Checks a range request.
pub fn validate_range(req: &RangeRequest, field: &str) -> Result<()> {
    validate_key_range(&req.range, &format!("{field}.key"))?;
    if req.limit < 0 {
        return Err(Error::invalid(
            format!("{field}.limit"),
            format!("must not be negative, got {}", req.limit),
        ));
    }
    Ok(())
}

/// Checks a key range: a single key must be non-empty; every key is at most
/// [`MAX_KEY_BYTES`].
pub fn validate_key_range(range: &KeyRange, field: &str) -> Result<()> {
    match range {
        KeyRange::Key(k) => validate_key(k, field),
        KeyRange::Prefix(p) => check_len(p, field),
        KeyRange::Range { start, end } => {
            check_len(start, field)?;
            check_len(end, &format!("{field}.range_end"))?;
            if !end.is_empty() && end <= start {
                return Err(Error::invalid(
                    format!("{field}.range_end"),
                    "must be greater than the start key, or empty for no upper bound",
                ));
            }
            Ok(())
        }
    }
}

fn validate_key(key: &[u8], field: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_as(Problem::EmptyKey, field, "key must not be empty"));
    }
    check_len(key, field)
}

fn check_len(key: &[u8], field: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_as(
            Problem::TooLarge,
            field,
            format!("{} bytes exceeds the limit of {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(())
}

fn validate_txn(txn: &TxnRequest) -> Result<()> {
    let ops = txn.compare.len() + txn.success.len() + txn.failure.len();
    if ops > MAX_TXN_OPS {
        return Err(Error::invalid_as(
            Problem::TooManyOps,
            "txn",
            format!("{ops} compares and operations exceed the limit of {MAX_TXN_OPS}"),
        ));
    }
    for (i, cmp) in txn.compare.iter().enumerate() {
        validate_key_range(&cmp.range, &format!("txn.compare[{i}].key"))?;
        if let super::types::CompareTarget::Value(v) = &cmp.target
            && v.len() > MAX_VALUE_BYTES
        {
            return Err(Error::invalid_as(
                Problem::TooLarge,
                format!("txn.compare[{i}].value"),
                format!("{} bytes exceeds the limit of {MAX_VALUE_BYTES}", v.len()),
            ));
        }
    }
    validate_branch(&txn.success, "txn.success")?;
    validate_branch(&txn.failure, "txn.failure")
}

fn validate_branch(ops: &[RequestOp], branch: &str) -> Result<()> {
    let mut put_keys = BTreeSet::new();
    let mut deletes = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let field = format!("{branch}[{i}]");
        match op {
            RequestOp::Range(r) => validate_range(r, &format!("{field}.range"))?,
            RequestOp::Put(p) => {
                validate_key(&p.key, &format!("{field}.put.key"))?;
                if p.value.len() > MAX_VALUE_BYTES {
                    return Err(Error::invalid_as(
                        Problem::TooLarge,
                        format!("{field}.put.value"),
                        format!("{} bytes exceeds the limit of {MAX_VALUE_BYTES}", p.value.len()),
                    ));
                }
                if p.lease < 0 {
                    return Err(Error::invalid(format!("{field}.put.lease"), "must not be negative"));
                }
                if !put_keys.insert(p.key.as_slice()) {
                    return Err(Error::invalid_as(
                        Problem::DuplicateKey,
                        format!("{field}.put.key"),
                        "duplicate key in one transaction branch",
                    ));
                }
            }
            RequestOp::DeleteRange(d) => {
                validate_key_range(&d.range, &format!("{field}.delete.key"))?;
                deletes.push((field, &d.range));
            }
        }
    }
    for (field, range) in deletes {
        if put_keys.iter().any(|k| range.contains(k)) {
            return Err(Error::invalid_as(
                Problem::DuplicateKey,
                format!("{field}.delete.key"),
                "deletes a key that the same transaction branch also puts",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{DeleteRangeRequest, PutRequest};

    fn txn(ops: Vec<RequestOp>) -> Command {
        Command::Txn(TxnRequest { success: ops, ..Default::default() })
    }

    fn problem_of(cmd: &Command) -> Problem {
        match validate_command(cmd) {
            Err(Error::InvalidArgument { problem, .. }) => problem,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn each_rule_names_its_problem() {
        let put = |k: &str, v: Vec<u8>| RequestOp::Put(PutRequest::new(k, v));
        assert_eq!(problem_of(&txn(vec![put("", vec![])])), Problem::EmptyKey);
        assert_eq!(problem_of(&txn(vec![put("k", vec![0; MAX_VALUE_BYTES + 1])])), Problem::TooLarge);
        assert_eq!(problem_of(&txn(vec![put(&"k".repeat(MAX_KEY_BYTES + 1), vec![])])), Problem::TooLarge);
        assert_eq!(problem_of(&txn(vec![put("k", vec![]), put("k", vec![])])), Problem::DuplicateKey);
        let delete = RequestOp::DeleteRange(DeleteRangeRequest { range: KeyRange::key("k"), prev_kv: false });
        assert_eq!(problem_of(&txn(vec![put("k", vec![]), delete])), Problem::DuplicateKey);
        let many = (0..=MAX_TXN_OPS).map(|i| put(&format!("k{i}"), vec![])).collect();
        assert_eq!(problem_of(&txn(many)), Problem::TooManyOps);
        assert_eq!(problem_of(&Command::Compact(-1)), Problem::Other);
    }

    fn field_of(cmd: &Command) -> String {
        match validate_command(cmd) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn empty_key_is_named() {
        assert_eq!(field_of(&txn(vec![RequestOp::Put(PutRequest::new("", "v"))])), "txn.success[0].put.key");
    }

    #[test]
    fn oversize_value_and_key_are_rejected() {
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert_eq!(
            field_of(&txn(vec![RequestOp::Put(PutRequest::new("k", big))])),
            "txn.success[0].put.value"
        );
        let ok = vec![0u8; MAX_VALUE_BYTES];
        assert!(validate_command(&txn(vec![RequestOp::Put(PutRequest::new("k", ok))])).is_ok());
        let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
        assert_eq!(
            field_of(&txn(vec![RequestOp::Put(PutRequest::new(long_key, "v"))])),
            "txn.success[0].put.key"
        );
    }

    #[test]
    fn too_many_ops_and_duplicates_are_rejected() {
        let ops = (0..=MAX_TXN_OPS).map(|i| RequestOp::Put(PutRequest::new(format!("k{i}"), "v"))).collect();
        assert_eq!(field_of(&txn(ops)), "txn");
        let dup = vec![RequestOp::Put(PutRequest::new("a", "1")), RequestOp::Put(PutRequest::new("a", "2"))];
        assert_eq!(field_of(&txn(dup)), "txn.success[1].put.key");
        let overlap = vec![
            RequestOp::Put(PutRequest::new("a/1", "1")),
            RequestOp::DeleteRange(DeleteRangeRequest { range: KeyRange::prefix("a/"), prev_kv: false }),
        ];
        assert_eq!(field_of(&txn(overlap)), "txn.success[1].delete.key");
    }

    #[test]
    fn bad_lease_and_compact_arguments_are_rejected() {
        assert_eq!(field_of(&Command::LeaseGrant { id: 1, ttl: 0 }), "lease.ttl");
        assert_eq!(field_of(&Command::LeaseGrant { id: 0, ttl: 5 }), "lease.id");
        assert_eq!(field_of(&Command::Compact(0)), "compact.revision");
    }

    #[test]
    fn backwards_range_is_rejected() {
        let r = RangeRequest::new(KeyRange::range("b", "a"));
        assert!(
            matches!(validate_range(&r, "range"), Err(Error::InvalidArgument { field, .. }) if field == "range.key.range_end")
        );
    }
}
