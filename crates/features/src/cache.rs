use crate::FeatureError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// blake3 of a file's bytes, hex: the cache key of its features.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Features on disk, one small file per image: `<root>/<model key>/<hash[..2]>/<hash>.feat`.
/// The model key names the backbone, its weights and its preprocessing, so changing any
/// of them misses the cache rather than returning stale features.
///
/// An entry is `RTF2`, the row length (u32), the row (f32s), then the blake3 of the model key,
/// the image's hash and all that: a truncated or corrupted entry (a full disk, a crash, a bad
/// copy) fails the check and is recomputed, never used, and so does an entry copied under
/// another image's name or another model's folder. Entries are written under a unique
/// temporary name and renamed, so any number of processes can fill one cache at once: the
/// same image always gives the same bytes, and the last rename wins.
///
/// A cache that cannot be written (read-only, a full disk) is read all the same: [`put_or_warn`]
/// warns once and the run goes on without keeping what it computes.
///
/// [`put_or_warn`]: FeatureCache::put_or_warn
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    key: String,
    dim: usize,
    unwritable: Arc<AtomicBool>,
}

const MAGIC: &[u8; 4] = b"RTF2";
const CHECKSUM: usize = 32;
/// A temporary entry older than this was left by a process that was killed (a live writer
/// renames its own within moments).
const STALE: Duration = Duration::from_secs(3600);

impl FeatureCache {
    pub fn new(root: &Path, model_key: &str, dim: usize) -> Self {
        Self { dir: root.join(model_key), key: model_key.to_string(), dim, unwritable: Arc::default() }
    }

    /// This model's folder of entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the features of the file whose content hash is `hash` are kept.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(format!("{hash}.feat"))
    }

    /// The checksum of an entry's data, bound to this model and this image.
    fn checksum(&self, hash: &str, data: &[u8]) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(&(self.key.len() as u64).to_le_bytes());
        h.update(self.key.as_bytes());
        h.update(&(hash.len() as u64).to_le_bytes());
        h.update(hash.as_bytes());
        h.update(data);
        h.finalize()
    }

    fn encode(&self, hash: &str, features: &[f32]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(8 + features.len() * 4 + CHECKSUM);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(features.len() as u32).to_le_bytes());
        for v in features {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let sum = self.checksum(hash, &bytes);
        bytes.extend_from_slice(sum.as_bytes());
        bytes
    }

    /// The row an entry holds, if it is whole, of this cache's length, and its checksum holds
    /// for this model and this image.
    fn decode(&self, hash: &str, bytes: &[u8]) -> Option<Vec<f32>> {
        let body = bytes.len().checked_sub(CHECKSUM)?;
        let (data, sum) = bytes.split_at(body);
        if data.len() != 8 + self.dim * 4 || &data[..4] != MAGIC || self.checksum(hash, data).as_bytes() != sum {
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
        self.decode(hash, &std::fs::read(self.path(hash)).ok()?)
    }

    /// Stores features; a reader never sees half an entry.
    pub fn put(&self, hash: &str, features: &[f32]) -> Result<(), FeatureError> {
        let path = self.path(hash);
        let err = |source| FeatureError::Cache { path: path.clone(), source };
        std::fs::create_dir_all(path.parent().expect("has parent")).map_err(err)?;
        retrain_files::write_atomic(&path, &self.encode(hash, features), false).map_err(err)
    }

    /// Whether entries can be kept here: creates this model's folder and a file in it. For
    /// callers whose whole job is filling the cache, so they fail before computing anything.
    pub fn check_writable(&self) -> Result<(), FeatureError> {
        let err = |source| FeatureError::Cache { path: self.dir.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(err)?;
        retrain_files::check_writable(&self.dir).map_err(err)
    }

    /// [`put`](Self::put), but a cache that cannot be written is not an error: the first failure
    /// is reported on standard error, and later entries are not tried.
    pub fn put_or_warn(&self, hash: &str, features: &[f32]) {
        if self.unwritable.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.put(hash, features) {
            if !self.unwritable.swap(true, Ordering::Relaxed) {
                eprintln!("warning: {e}: features are read from the cache but new ones are not kept");
            }
        }
    }

    /// Removes temporary entries that writers killed mid-write left behind (older than an
    /// hour, so a live writer's are never touched); returns how many.
    pub fn sweep_partials(&self) -> usize {
        let Ok(dirs) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        for sub in dirs.flatten().filter(|d| d.file_type().is_ok_and(|t| t.is_dir())) {
            for e in std::fs::read_dir(sub.path()).into_iter().flatten().flatten() {
                let partial = retrain_files::is_temporary(&e.file_name());
                let old = e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t.elapsed().is_ok_and(|a| a > STALE));
                if partial && old && std::fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
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
        // The same entry under another image's name is a miss.
        let other = content_hash(b"abd");
        std::fs::create_dir_all(c.path(&other).parent().unwrap()).unwrap();
        std::fs::write(c.path(&other), &whole).unwrap();
        assert!(c.get(&other).is_none());
        std::fs::remove_file(c.path(&other)).unwrap();
        // A row of another length is a miss, not a short row.
        std::fs::write(c.path(&h), &whole).unwrap();
        assert!(FeatureCache::new(dir.path(), "m", 2).get(&h).is_none());
        // Nothing but the entry is left in its folder.
        assert_eq!(std::fs::read_dir(c.path(&h).parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn only_stale_partial_entries_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let c = FeatureCache::new(dir.path(), "m", 1);
        let h = content_hash(b"x");
        c.put(&h, &[1.0]).unwrap();
        let folder = c.path(&h).parent().unwrap().to_path_buf();
        let (stale, fresh) = (folder.join(".retrain-a.partial"), folder.join(".retrain-b.partial"));
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&fresh, b"half").unwrap();
        let hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(hours_ago).unwrap();
        assert_eq!(c.sweep_partials(), 1);
        assert!(!stale.exists() && fresh.exists() && c.get(&h).is_some());
    }

    #[test]
    #[cfg(unix)]
    fn an_unwritable_cache_warns_once_and_is_still_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = FeatureCache::new(dir.path(), "m", 1);
        let h = content_hash(b"x");
        c.put(&h, &[2.0]).unwrap();
        std::fs::set_permissions(dir.path().join("m"), std::fs::Permissions::from_mode(0o555)).unwrap();
        let other = content_hash(b"y");
        let writable = c.put(&other, &[3.0]).is_ok();
        c.put_or_warn(&other, &[3.0]);
        assert!(c.unwritable.load(Ordering::Relaxed) != writable, "root ignores the mode");
        assert_eq!(c.get(&h).unwrap(), vec![2.0]);
        std::fs::set_permissions(dir.path().join("m"), std::fs::Permissions::from_mode(0o755)).unwrap();
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
