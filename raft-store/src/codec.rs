//! The on-disk and on-wire encoding: bincode behind a one-byte format version.
//!
//! Every value this crate persists or sends between members goes through [`encode`] and
//! [`decode`], so the serializer can be swapped in one place and an unknown format is always
//! detected rather than misread.

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
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(64);
    buf.push(FORMAT_VERSION);
    bincode::serialize_into(&mut buf, value).map_err(CodecError::Bincode)?;
    Ok(buf)
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
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
}

#[cfg(test)]
#[path = "codec_fixture.rs"]
mod fixture;
