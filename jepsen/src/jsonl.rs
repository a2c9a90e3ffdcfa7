//! JSON-lines files, the form every workload's history is saved in: one record per line,
//! blank lines skipped, errors naming the file and the 1-based line.

use std::io::{BufRead as _, Write as _};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a JSON-lines file could not be written or read. Each workload's error type takes it
/// in through `From`, keeping its own `Io` and `Parse` variants.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid record.
    #[error("{path} line {line}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The 1-based line number.
        line: usize,
        /// Why it did not parse.
        source: serde_json::Error,
    },
}

/// Writes `records` to `path`, one JSON object per line, replacing the file.
pub fn save<T: Serialize>(path: &Path, records: impl IntoIterator<Item = T>) -> Result<(), JsonlError> {
    let io = |source| JsonlError::Io { path: path.display().to_string(), source };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for record in records {
        let line = serde_json::to_string(&record).map_err(|e| io(std::io::Error::other(e)))?;
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}

/// Reads the records of a file [`save`] wrote, each with its 1-based line number.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>, JsonlError> {
    let io = |source| JsonlError::Io { path: path.display().to_string(), source };
    let file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut records = Vec::new();
    for (i, line) in file.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| JsonlError::Parse {
            path: path.display().to_string(),
            line: i + 1,
            source,
        })?;
        records.push((i + 1, record));
    }
    Ok(records)
}

/// `From<JsonlError>` for a workload error type with the same `Io { path, source }` and
/// `Parse { path, line, source }` variants.
macro_rules! from_jsonl_error {
    ($error:ty) => {
        impl From<$crate::jsonl::JsonlError> for $error {
            fn from(e: $crate::jsonl::JsonlError) -> Self {
                match e {
                    $crate::jsonl::JsonlError::Io { path, source } => Self::Io { path, source },
                    $crate::jsonl::JsonlError::Parse { path, line, source } => {
                        Self::Parse { path, line, source }
                    }
                }
            }
        }
    };
}
pub(crate) use from_jsonl_error;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_bad_line_is_named() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("h.jsonl");
        save(&path, [1u32, 2, 3])?;
        assert_eq!(std::fs::read_to_string(&path)?, "1\n2\n3\n");
        assert_eq!(load::<u32>(&path)?, [(1, 1), (2, 2), (3, 3)]);
        std::fs::write(&path, "7\n\n\"x\"\n")?;
        let err = load::<u32>(&path).err().ok_or("a string parsed as a number")?;
        assert!(matches!(err, JsonlError::Parse { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("h.jsonl line 3"), "{err}");
        let missing = load::<u32>(&dir.path().join("missing")).err().ok_or("a missing file loaded")?;
        assert!(matches!(missing, JsonlError::Io { .. }), "{missing}");
        Ok(())
    }
}
