//! Finding the labelled files: one folder per class, optionally under `train/` and `val/`.

use crate::{Error, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub class_names: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    /// How the validation split was made, for the report.
    pub split: String,
}

fn data_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Data { path: path.to_path_buf(), reason: reason.into() }
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| data_err(dir, format!("cannot read folder: {e}")))?;
    let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| !is_hidden(p)).collect();
    v.sort();
    Ok(v)
}

/// Every non-hidden file below `dir`, sorted (files that turn out not to be images are
/// reported later, when decoding, rather than silently dropped here).
pub fn files_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in sorted_entries(dir)? {
        if p.is_dir() {
            out.extend(files_below(&p)?);
        } else if p.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// Class folders of `dir` and their files, as (name, files), sorted by name.
pub fn class_folders(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    if !dir.exists() {
        return Err(data_err(dir, "no such folder"));
    }
    if !dir.is_dir() {
        return Err(data_err(dir, "not a folder; expected one sub-folder per class"));
    }
    let mut classes = Vec::new();
    for p in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let files = files_below(&p)?;
        if files.is_empty() {
            return Err(data_err(&p, format!("class folder `{name}` holds no files")));
        }
        classes.push((name, files));
    }
    if classes.is_empty() {
        return Err(data_err(
            dir,
            "no class folders found; expected one sub-folder per class (DATA_DIR/cats/*.jpg, DATA_DIR/dogs/*.jpg, ...)",
        ));
    }
    Ok(classes)
}

/// Reads a dataset. `DATA_DIR/train` and `DATA_DIR/val` (or `valid`/`validation`), when both
/// exist, are the split; otherwise each class is split at random, `val_fraction` of it to
/// validation, reproducibly for a given `seed`.
pub fn scan(dir: &Path, val_dir: Option<&Path>, val_fraction: f64, seed: u64) -> Result<Dataset> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(Error::ValFraction(val_fraction));
    }
    let train_dir = dir.join("train");
    let found_val = ["val", "valid", "validation"].iter().map(|v| dir.join(v)).find(|p| p.is_dir());
    let (train_root, val_root) = match (val_dir, found_val) {
        (Some(v), _) => (if train_dir.is_dir() { train_dir } else { dir.to_path_buf() }, Some(v.to_path_buf())),
        (None, Some(v)) if train_dir.is_dir() => (train_dir, Some(v)),
        _ => (dir.to_path_buf(), None),
    };
    let classes = class_folders(&train_root)?;
    if classes.len() < 2 {
        return Err(data_err(
            &train_root,
            format!("only one class (`{}`) found; a classifier needs at least two class folders", classes[0].0),
        ));
    }
    let class_names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
    match val_root {
        Some(vr) => {
            let mut val = Vec::new();
            for (name, files) in class_folders(&vr)? {
                let label = class_names.iter().position(|c| *c == name).ok_or_else(|| {
                    data_err(
                        &vr.join(&name),
                        format!("validation class `{name}` is not among the training classes {class_names:?}"),
                    )
                })?;
                val.extend(files.into_iter().map(|path| Sample { path, label }));
            }
            let train = classes
                .into_iter()
                .enumerate()
                .flat_map(|(label, (_, f))| f.into_iter().map(move |path| Sample { path, label }))
                .collect();
            Ok(Dataset {
                class_names,
                train,
                val,
                split: format!("folders {} / {}", dir.join("train").display(), vr.display()),
            })
        }
        None => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (mut train, mut val) = (Vec::new(), Vec::new());
            for (label, (_, mut files)) in classes.into_iter().enumerate() {
                files.shuffle(&mut rng);
                let n_val = if files.len() < 2 {
                    0
                } else {
                    ((files.len() as f64 * val_fraction).round() as usize).clamp(1, files.len() - 1)
                };
                for (i, path) in files.into_iter().enumerate() {
                    let s = Sample { path, label };
                    if i < n_val {
                        val.push(s)
                    } else {
                        train.push(s)
                    }
                }
            }
            Ok(Dataset {
                class_names,
                train,
                val,
                split: format!("stratified random, val fraction {val_fraction}, seed {seed}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(spec: &[(&str, usize)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (class, n) in spec {
            let c = d.path().join(class);
            std::fs::create_dir_all(&c).unwrap();
            for i in 0..*n {
                std::fs::write(c.join(format!("{i:03}.jpg")), b"x").unwrap();
            }
            std::fs::write(c.join(".DS_Store"), b"hidden").unwrap();
        }
        d
    }

    #[test]
    fn stratified_split_is_seeded_and_ignores_hidden_files() {
        let d = tree(&[("cats", 10), ("dogs", 20)]);
        let a = scan(d.path(), None, 0.2, 7).unwrap();
        assert_eq!(a.class_names, vec!["cats", "dogs"]);
        assert_eq!(a.val.iter().filter(|s| s.label == 0).count(), 2);
        assert_eq!(a.val.iter().filter(|s| s.label == 1).count(), 4);
        assert_eq!(a.train.len() + a.val.len(), 30);
        assert!(a.train.iter().chain(&a.val).all(|s| !s.path.to_string_lossy().contains(".DS_Store")));
        let b = scan(d.path(), None, 0.2, 7).unwrap();
        assert_eq!(a.val, b.val);
        let c = scan(d.path(), None, 0.2, 8).unwrap();
        assert_ne!(a.val, c.val);
    }

    #[test]
    fn train_val_folders_are_the_split() {
        let d = tempfile::tempdir().unwrap();
        for (split, n) in [("train", 3), ("val", 2)] {
            for class in ["a", "b"] {
                let c = d.path().join(split).join(class);
                std::fs::create_dir_all(&c).unwrap();
                for i in 0..n {
                    std::fs::write(c.join(format!("{i}.png")), b"x").unwrap();
                }
            }
        }
        let ds = scan(d.path(), None, 0.2, 0).unwrap();
        assert_eq!((ds.train.len(), ds.val.len()), (6, 4));
    }

    #[test]
    fn bad_layouts_are_clear_errors() {
        let missing = scan(Path::new("/no/such/dir"), None, 0.2, 0).unwrap_err().to_string();
        assert!(missing.contains("/no/such/dir") && missing.contains("no such folder"), "{missing}");
        let empty = tempfile::tempdir().unwrap();
        assert!(scan(empty.path(), None, 0.2, 0).unwrap_err().to_string().contains("no class folders"));
        let one = tree(&[("only", 3)]);
        assert!(scan(one.path(), None, 0.2, 0).unwrap_err().to_string().contains("only one class"));
        let hollow = tree(&[("a", 3), ("b", 0)]);
        let e = scan(hollow.path(), None, 0.2, 0).unwrap_err().to_string();
        assert!(e.contains("`b` holds no files"), "{e}");
        for f in [0.0, 1.0, 1.5, -0.1] {
            assert!(matches!(scan(hollow.path(), None, f, 0), Err(Error::ValFraction(_))));
        }
    }
}
