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

/// Checks a format version byte read by a streaming reader (see [`decode_item_from`]).
pub fn check_version(found: u8) -> Result<(), CodecError> {
    if found == FORMAT_VERSION { Ok(()) } else { Err(CodecError::UnknownVersion { found }) }
}

/// Appends the encoding of `value` without a version byte: [`encode`] of a value whose
/// parts are written one by one (a sequence's length, then each element) is the version
/// byte followed by the parts' items, so a large value can be written without holding it.
pub fn encode_item_into<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), CodecError> {
    bincode::serialize_into(buf, value).map_err(CodecError::Bincode)
}

/// The bytes [`encode_item_into`] appends for `value`.
pub fn item_size<T: Serialize + ?Sized>(value: &T) -> Result<u64, CodecError> {
    bincode::serialized_size(value).map_err(CodecError::Bincode)
}

/// Decodes one item written by [`encode_item_into`] from `reader`, reading at most `limit`
/// bytes: a length prefix that claims more than `limit` fails before anything is allocated
/// for it, so a reader that knows how many bytes are left (a file's length) can stream
/// untrusted input safely.
pub fn decode_item_from<R: std::io::Read, T: DeserializeOwned>(
    reader: R,
    limit: u64,
) -> Result<T, CodecError> {
    use bincode::Options as _;
    // The same encoding as `bincode::serialize` (fixed-width integers), with a limit.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit)
        .deserialize_from(reader)
        .map_err(CodecError::Bincode)
}

/// Decodes a value written by [`encode`]. Bytes after the value are ignored.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, rest) = bytes.split_first().ok_or(CodecError::Empty)?;
    check_version(version)?;
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
    fn a_value_written_item_by_item_decodes_as_the_whole_value() -> Result<(), CodecError> {
        let whole: (String, Vec<(u8, Vec<u8>)>) = ("meta".into(), vec![(1, vec![7; 3]), (2, Vec::new())]);
        let mut buf = vec![FORMAT_VERSION];
        encode_item_into(&mut buf, &whole.0)?;
        encode_item_into(&mut buf, &(whole.1.len() as u64))?;
        for item in &whole.1 {
            encode_item_into(&mut buf, item)?;
        }
        assert_eq!(buf, encode(&whole)?);
        assert_eq!(item_size(&whole.1[0])?, 1 + 8 + 3);
        let mut reader = &buf[1..];
        let meta: String = decode_item_from(&mut reader, 100)?;
        assert_eq!(meta, "meta");
        let n: u64 = decode_item_from(&mut reader, 100)?;
        assert_eq!(n, 2);
        let first: (u8, Vec<u8>) = decode_item_from(&mut reader, 100)?;
        assert_eq!(first, whole.1[0]);
        Ok(())
    }

    #[test]
    fn a_streamed_item_longer_than_its_limit_fails_without_allocating_it() {
        let mut huge = Vec::new();
        huge.extend_from_slice(&(1u64 << 62).to_le_bytes());
        huge.extend_from_slice(b"k");
        let got: Result<Vec<u8>, _> = decode_item_from(&huge[..], huge.len() as u64);
        assert!(matches!(got, Err(CodecError::Bincode(_))));
        let exact = encode(&b"abc".to_vec()).expect("encodes");
        // Eight bytes of length and three of content: a limit of exactly 11 is enough.
        let fits: Result<Vec<u8>, _> = decode_item_from(&exact[1..], 11);
        assert_eq!(fits.ok(), Some(b"abc".to_vec()));
        let limited: Result<Vec<u8>, _> = decode_item_from(&exact[1..], 5);
        assert!(matches!(limited, Err(CodecError::Bincode(_))), "11 bytes do not fit a limit of 5");
        assert!(matches!(check_version(9), Err(CodecError::UnknownVersion { found: 9 })));
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
