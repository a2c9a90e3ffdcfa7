//! Append histories as JSON lines: one transaction per line, in invocation order.

use std::path::Path;

use super::{AppendError, AppendHistory};

impl AppendHistory {
    /// Writes the history as JSON lines.
    pub fn save(&self, path: &Path) -> Result<(), AppendError> {
        Ok(crate::jsonl::save(path, &self.txns)?)
    }

    /// Reads a history written by [`AppendHistory::save`].
    pub fn load(path: &Path) -> Result<AppendHistory, AppendError> {
        let txns = crate::jsonl::load(path)?.into_iter().map(|(_, t)| t).collect();
        Ok(AppendHistory { txns })
    }
}

crate::jsonl::from_jsonl_error!(AppendError);

#[cfg(test)]
mod tests {
    use super::super::{AppendRecorder, Completion, MicroOp, Undecodable};
    use super::*;

    #[test]
    fn a_history_round_trips_through_json_lines() -> Result<(), Box<dyn std::error::Error>> {
        let r = AppendRecorder::new();
        let planned = vec![
            MicroOp::Append { key: "k".into(), element: 1 },
            MicroOp::Read { key: "k".into(), value: None },
        ];
        let a = r.invoke(3, planned.clone());
        let b = r.invoke(4, vec![MicroOp::Read { key: "j".into(), value: None }]);
        let _running = r.invoke(5, planned.clone());
        let read = vec![planned[0].clone(), MicroOp::Read { key: "k".into(), value: Some(vec![1]) }];
        r.complete(a, Completion::ok(read.clone()));
        let mut bad = Completion::fail("key j holds x");
        bad.undecodable.push(Undecodable { key: "j".into(), value: "x".into() });
        r.complete(b, bad);
        let h = r.history();
        assert_eq!(h.txns.len(), 3);
        assert_eq!(h.txns[0].ops, read);
        assert!(h.txns[0].complete_ns.is_some());
        assert_eq!(h.txns[2].complete_ns, None, "still running");
        assert_eq!(h.txns[2].outcome, super::super::Outcome::Info);
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("append.jsonl");
        h.save(&path)?;
        let text = std::fs::read_to_string(&path)?;
        assert!(text.lines().next().is_some_and(|l| l.contains(r#""f":"append""#)), "{text}");
        assert_eq!(AppendHistory::load(&path)?, h);
        Ok(())
    }

    #[test]
    fn a_bad_line_is_reported_with_its_file_and_number() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "\n{\"process\":1}\n")?;
        let err = AppendHistory::load(&path).err().ok_or("a bad line parsed")?;
        let text = err.to_string();
        assert!(text.contains("line 2") && text.contains("a.jsonl"), "{text}");
        Ok(())
    }
}
