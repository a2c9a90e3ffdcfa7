//! The on-disk and on-wire encoding: bincode behind a one-byte format version.
//!
//! Every value the replicated store persists or sends between members goes through [`encode`]
//! and [`decode`], so the serializer can be swapped in one place and an unknown format is
//! always detected rather than misread.
//!
//! Decoding reads from a byte slice, so a byte string or string whose length prefix exceeds
//! the bytes left fails without allocating it, and serde reserves at most 1 MiB for a
//! sequence before its elements are read: a length prefix in a short input cannot make
//! [`decode`] allocate more than that per sequence being read (the `store_record` fuzz
//! target checks decoding with a 64 MiB allocation limit). Reading from an `io::Read`
//! instead would trust the prefix.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format version written in front of every encoded value.
pub const FORMAT_VERSION: u8 = 1;

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value was written by a format this build does not know.
    #[error("unknown format version {found} (this build reads version {FORMAT_VERSION})")]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The value is empty.
    #[error("empty value (missing format version byte)")]
    Empty,
    /// bincode failed.
    #[error("malformed value")]
    Bincode(#[source] bincode::Error),
}

/// Encodes `value` with the current format version.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(64);
    buf.push(FORMAT_VERSION);
    bincode::serialize_into(&mut buf, value).map_err(CodecError::Bincode)?;
    Ok(buf)
}

/// Decodes a value written by [`encode`]. Bytes after the value are ignored.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion { found: version });
    }
    bincode::deserialize(rest).map_err(CodecError::Bincode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_checks() {
        let v = (1u64, "x".to_string(), vec![1u8, 2]);
        let bytes = encode(&v).expect("encodes");
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<(u64, String, Vec<u8>)>(&bytes).expect("decodes"), v);
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&future),
            Err(CodecError::UnknownVersion { found: 9 })
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode::<(u64, String, Vec<u8>)>(&bytes[..4]), Err(CodecError::Bincode(_))));
    }

    #[test]
    fn length_prefixes_beyond_the_input_fail_without_allocating() {
        // A version record whose key claims 2^62 bytes, and sequences that claim 2^62 items.
        let mut huge = vec![FORMAT_VERSION];
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        huge.extend_from_slice(b"k");
        assert!(matches!(decode::<flotilla_core::store::VersionRecord>(&huge), Err(CodecError::Bincode(_))));
        assert!(matches!(decode::<String>(&huge), Err(CodecError::Bincode(_))));
        assert!(matches!(decode::<Vec<Vec<u64>>>(&huge), Err(CodecError::Bincode(_))));
    }
}

#[cfg(any(test, feature = "test-util"))]
#[path = "codec_fixture.rs"]
pub mod fixture;
