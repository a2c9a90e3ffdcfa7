//! The on-disk and on-wire encoding (bincode behind a one-byte format version) lives in
//! `flotilla-store-wire`'s `codec`, so it can be fuzzed without RocksDB; this module
//! re-exports it for the crate and checks the format of the records only this crate defines.

pub use flotilla_store_wire::codec::{CodecError, FORMAT_VERSION};
pub(crate) use flotilla_store_wire::codec::{
    check_version, decode, decode_item_from, encode, encode_item_into, item_size,
};

#[cfg(test)]
#[path = "codec_fixture.rs"]
mod fixture;
