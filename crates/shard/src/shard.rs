use serde::{Deserialize, Serialize};
use std::path::{Component, Path};

/// Shard `index` of `count` (`K/N` on the command line, 0 ≤ K < N: a Kubernetes
/// `JOB_COMPLETION_INDEX` or a Slurm `SLURM_ARRAY_TASK_ID` as they come).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--shard `{given}`: {reason}")]
pub struct ShardError {
    given: String,
    reason: &'static str,
}

/// More shards than this is a typo, not a cluster.
const MAX_SHARDS: u32 = 1_000_000;

impl Shard {
    /// The whole dataset.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Which shard of `count` a file belongs to, from its path relative to the dataset folder
    /// (see [`relative_key`]): the first 8 bytes of its blake3, modulo `count`. Stable across
    /// machines, runs and mount points, and a file added later never moves the others.
    pub fn of(key: &[u8], count: u32) -> u32 {
        let h = blake3::hash(key);
        let first = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        (first % u64::from(count.max(1))) as u32
    }

    pub fn owns(&self, key: &[u8]) -> bool {
        Self::of(key, self.count) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        let err = |reason| ShardError { given: s.into(), reason };
        let (k, n) = s.split_once('/').ok_or_else(|| err("expected K/N, e.g. 0/4 (shards are counted from 0)"))?;
        let k: u32 = k.trim().parse().map_err(|_| err("K is not a whole number"))?;
        let n: u32 = n.trim().parse().map_err(|_| err("N is not a whole number"))?;
        if n == 0 || n > MAX_SHARDS {
            return Err(err("N must be between 1 and 1000000"));
        }
        if k >= n {
            return Err(err("K must be below N: shards are counted from 0 (0/4 … 3/4)"));
        }
        Ok(Shard { index: k, count: n })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl TryFrom<String> for Shard {
    type Error = ShardError;
    fn try_from(s: String) -> Result<Self, ShardError> {
        s.parse()
    }
}

impl From<Shard> for String {
    fn from(s: Shard) -> String {
        s.to_string()
    }
}

/// A file's path relative to the first of `roots` it lies under, as bytes joined by `/`, the
/// root's position before it (0 for the dataset folder, 1 for a validation folder given
/// elsewhere): the same on every machine whatever the dataset is mounted as.
pub fn relative_key(path: &Path, roots: &[&Path]) -> Vec<u8> {
    let (n, rel) = roots
        .iter()
        .enumerate()
        .find_map(|(n, r)| path.strip_prefix(r).ok().map(|rel| (n, rel)))
        .unwrap_or((roots.len(), path));
    let mut key = format!("{n}:").into_bytes();
    let mut first = true;
    for c in rel.components() {
        if let Component::Normal(part) = c {
            if !first {
                key.push(b'/');
            }
            key.extend_from_slice(part.as_encoded_bytes());
            first = false;
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn parses_k_of_n_and_says_what_is_wrong() {
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        assert_eq!("0/1".parse(), Ok(Shard::ALL));
        for (bad, why) in [
            ("4/4", "K must be below N"),
            ("1/0", "N must be between"),
            ("2", "expected K/N"),
            ("-1/4", "K is not"),
            ("a/b", "K is not"),
            ("1/x", "N is not"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
        let s: Shard = serde_json_round_trip(Shard { index: 2, count: 7 });
        assert_eq!(s, Shard { index: 2, count: 7 });
    }

    fn serde_json_round_trip(s: Shard) -> Shard {
        // Serialised as the command line writes it.
        let text: String = s.into();
        assert_eq!(text, "2/7");
        Shard::try_from(text).unwrap()
    }

    #[test]
    fn keys_do_not_depend_on_where_the_dataset_is_mounted() {
        let a = relative_key(Path::new("/mnt/a/data/cats/1.jpg"), &[Path::new("/mnt/a/data")]);
        let b = relative_key(Path::new("data/cats/1.jpg"), &[Path::new("data")]);
        assert_eq!(a, b);
        assert_eq!(a, b"0:cats/1.jpg");
        // A validation folder elsewhere is told apart from the same names in the data folder.
        let v = relative_key(Path::new("/v/cats/1.jpg"), &[Path::new("/d"), Path::new("/v")]);
        assert_eq!(v, b"1:cats/1.jpg");
    }

    #[test]
    fn shards_are_disjoint_cover_everything_and_are_balanced() {
        let keys: Vec<Vec<u8>> = (0..20_000)
            .map(|i| relative_key(&PathBuf::from(format!("d/class{}/img{i}.jpg", i % 7)), &[Path::new("d")]))
            .collect();
        for n in [1u32, 2, 3, 4, 16] {
            let mut counts = vec![0usize; n as usize];
            for k in &keys {
                let owners: Vec<u32> = (0..n).filter(|&i| Shard { index: i, count: n }.owns(k)).collect();
                assert_eq!(owners.len(), 1, "exactly one shard owns each file");
                counts[owners[0] as usize] += 1;
            }
            let mean = keys.len() as f64 / n as f64;
            for c in counts {
                // A hash spreads 20,000 files within a few standard deviations of even.
                assert!((c as f64 - mean).abs() < 5.0 * mean.sqrt() + 1.0, "n={n}: {c} vs {mean}");
            }
        }
        // Pinned: machines running different releases must still agree on who owns what.
        let pinned: Vec<u32> =
            ["0:cats/1.jpg", "0:dogs/2.jpg", "1:ants/x.png"].iter().map(|k| Shard::of(k.as_bytes(), 1000)).collect();
        assert_eq!(pinned, [526, 348, 37]);
    }
}
