//! How the collection's records are keyed in sled: key prefixes, the
//! manifest key, and the encoding of ids into keys and back (see the table
//! in the module docs).

use crate::error::{IndexError, Result};

use super::types::Manifest;

/// The key of the [`Manifest`].
pub(super) const MANIFEST_KEY: &[u8] = b"m";
/// Prefix of item records (`i/<id>`).
pub(super) const ITEM: u8 = b'i';
/// Prefix of appendable vectors (`v/<id>`).
pub(super) const VECTOR: u8 = b'v';
/// Prefix of tombstones of deleted sealed items (`t/<id>`).
pub(super) const TOMBSTONE: u8 = b't';

/// The stored form of a manifest.
pub(super) fn manifest_bytes(m: &Manifest) -> Vec<u8> {
    serde_json::to_vec(m).expect("a manifest always serialises")
}

/// The key of `id` under `prefix`: the prefix, `/`, the id big-endian (so
/// that a prefix scan visits ids in ascending order).
pub(super) fn key(prefix: u8, id: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = prefix;
    k[1] = b'/';
    k[2..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The id in a key made by [`key`].
pub(super) fn id_of(k: &[u8]) -> Result<u64> {
    let raw: [u8; 8] = k
        .get(2..10)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| IndexError::Corrupt(format!("malformed key {k:?}")))?;
    Ok(u64::from_be_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_scan_in_id_order() {
        for id in [0, 1, 255, 256, u64::MAX] {
            assert_eq!(id_of(&key(ITEM, id)).unwrap(), id);
        }
        assert!(key(VECTOR, 255) < key(VECTOR, 256));
        assert!(matches!(id_of(b"i/"), Err(IndexError::Corrupt(_))));
    }
}
