use crate::FeatureError;
use std::path::{Path, PathBuf};

/// blake3 of a file's bytes, hex: the cache key of its features.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Features on disk, one small file per image: `<root>/<model key>/<hash[..2]>/<hash>.f32`.
/// The model key names the backbone, its weights and its preprocessing, so changing any
/// of them misses the cache rather than returning stale features.
#[derive(Clone, Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    dim: usize,
}

impl FeatureCache {
    pub fn new(root: &Path, model_key: &str, dim: usize) -> Self {
        Self { dir: root.join(model_key), dim }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(&hash[..2]).join(format!("{hash}.f32"))
    }

    /// The cached features, or `None` (missing, or the wrong size from an interrupted write).
    pub fn get(&self, hash: &str) -> Option<Vec<f32>> {
        let bytes = std::fs::read(self.path(hash)).ok()?;
        if bytes.len() != self.dim * 4 {
            return None;
        }
        Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    }

    /// Stores features; written to a temporary name and renamed, so a reader never sees half.
    pub fn put(&self, hash: &str, features: &[f32]) -> Result<(), FeatureError> {
        let path = self.path(hash);
        let err = |source| FeatureError::Cache { path: path.clone(), source };
        std::fs::create_dir_all(path.parent().expect("has parent")).map_err(err)?;
        let mut bytes = Vec::with_capacity(features.len() * 4);
        for v in features {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_size_check() {
        let dir = tempfile::tempdir().unwrap();
        let c = FeatureCache::new(dir.path(), "m", 3);
        let h = content_hash(b"abc");
        assert!(c.get(&h).is_none());
        c.put(&h, &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(c.get(&h).unwrap(), vec![1.0, -2.5, 3.25]);
        // Another model key does not see it; a truncated entry is a miss.
        assert!(FeatureCache::new(dir.path(), "other", 3).get(&h).is_none());
        std::fs::write(c.path(&h), [0u8; 5]).unwrap();
        assert!(c.get(&h).is_none());
    }
}
