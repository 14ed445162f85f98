use crate::FeatureError;
use std::path::{Path, PathBuf};

/// blake3 of a file's bytes, hex: the cache key of its features.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Features on disk, one small file per image: `<root>/<model key>/<hash[..2]>/<hash>.feat`.
/// The model key names the backbone, its weights and its preprocessing, so changing any
/// of them misses the cache rather than returning stale features.
///
/// An entry is `RTF1`, the row length (u32), the row (f32s), then the blake3 of all that:
/// a truncated or corrupted entry (a full disk, a crash, a bad copy) fails the check and is
/// recomputed, never used. Entries are written under a unique temporary name and renamed,
/// so any number of processes can fill one cache at once: the same image always gives the
/// same bytes, and the last rename wins.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    dim: usize,
}

const MAGIC: &[u8; 4] = b"RTF1";
const CHECKSUM: usize = 32;

impl FeatureCache {
    pub fn new(root: &Path, model_key: &str, dim: usize) -> Self {
        Self { dir: root.join(model_key), dim }
    }

    /// This model's folder of entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the features of the file whose content hash is `hash` are kept.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(format!("{hash}.feat"))
    }

    fn encode(&self, features: &[f32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + features.len() * 4 + CHECKSUM);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(features.len() as u32).to_le_bytes());
        for v in features {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let sum = blake3::hash(&bytes);
        bytes.extend_from_slice(sum.as_bytes());
        bytes
    }

    /// The row an entry holds, if it is whole, of this cache's length, and its checksum holds.
    fn decode(&self, bytes: &[u8]) -> Option<Vec<f32>> {
        let body = bytes.len().checked_sub(CHECKSUM)?;
        let (data, sum) = bytes.split_at(body);
        if data.len() != 8 + self.dim * 4 || &data[..4] != MAGIC || blake3::hash(data).as_bytes() != sum {
            return None;
        }
        if u32::from_le_bytes(data[4..8].try_into().ok()?) as usize != self.dim {
            return None;
        }
        Some(data[8..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// The cached features, or `None`: missing, or not whole (then they are recomputed and
    /// the entry rewritten).
    pub fn get(&self, hash: &str) -> Option<Vec<f32>> {
        self.decode(&std::fs::read(self.path(hash)).ok()?)
    }

    /// Stores features; a reader never sees half an entry.
    pub fn put(&self, hash: &str, features: &[f32]) -> Result<(), FeatureError> {
        let path = self.path(hash);
        let err = |source| FeatureError::Cache { path: path.clone(), source };
        std::fs::create_dir_all(path.parent().expect("has parent")).map_err(err)?;
        retrain_files::write_atomic(&path, &self.encode(features), false).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_damaged_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = FeatureCache::new(dir.path(), "m", 3);
        let h = content_hash(b"abc");
        assert!(c.get(&h).is_none());
        c.put(&h, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(c.get(&h).unwrap(), vec![1.0, -2.5, 3.25]);
        // Another model key does not see it.
        assert!(FeatureCache::new(dir.path(), "other", 3).get(&h).is_none());
        let whole = std::fs::read(c.path(&h)).unwrap();
        // Every truncation, and a flipped bit anywhere, is refused.
        for n in 0..whole.len() {
            std::fs::write(c.path(&h), &whole[..n]).unwrap();
            assert!(c.get(&h).is_none(), "truncated to {n}");
        }
        for i in 0..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0x10;
            std::fs::write(c.path(&h), &bad).unwrap();
            assert!(c.get(&h).is_none(), "bit flipped in byte {i}");
        }
        // A row of another length is a miss, not a short row.
        std::fs::write(c.path(&h), &whole).unwrap();
        assert!(FeatureCache::new(dir.path(), "m", 2).get(&h).is_none());
        // Nothing but the entry is left in its folder.
        assert_eq!(std::fs::read_dir(c.path(&h).parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn many_writers_of_one_entry_never_leave_it_broken() {
        let dir = tempfile::tempdir().unwrap();
        let c = FeatureCache::new(dir.path(), "m", 256);
        let h = content_hash(b"shared");
        let row: Vec<f32> = (0..256).map(|i| i as f32 * 0.5).collect();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        c.put(&h, &row).unwrap();
                        // A reader in the middle of it all sees the whole row or nothing.
                        if let Some(r) = c.get(&h) {
                            assert_eq!(r, row);
                        }
                    }
                });
            }
        });
        assert_eq!(c.get(&h).unwrap(), row);
        assert_eq!(std::fs::read_dir(c.path(&h).parent().unwrap()).unwrap().count(), 1);
    }
}
