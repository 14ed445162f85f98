//! Photos that appear more than once. A copy under two classes teaches the model both
//! labels for one picture; a copy in both training and validation scores the model on a
//! photo it has learned. Both are common in folders people assemble (a linked folder, a
//! copy, a hard link, a download saved twice).

use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The same content under more than one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conflict {
    /// The classes it appears under, sorted.
    pub classes: Vec<String>,
    #[serde(with = "crate::names::json::vec")]
    pub paths: Vec<PathBuf>,
}

/// The same content in training and in validation (of one class).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Leak {
    pub class: String,
    #[serde(with = "crate::names::json::vec")]
    pub train: Vec<PathBuf>,
    #[serde(with = "crate::names::json::vec")]
    pub val: Vec<PathBuf>,
}

fn shown(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" = ")
}

/// One line for a warning: how many conflicts, with the first as an example.
pub fn describe_conflicts(conflicts: &[Conflict]) -> Option<String> {
    let c = conflicts.first()?;
    let files: usize = conflicts.iter().map(|c| c.paths.len()).sum();
    Some(format!(
        "{} photo(s) appear under more than one class ({files} files; e.g. {} in {})",
        conflicts.len(),
        shown(&c.paths),
        c.classes.join(" and ")
    ))
}

/// One line for a warning: how many validation copies, with the first as an example.
pub fn describe_leaks(leaks: &[Leak]) -> Option<String> {
    let l = leaks.first()?;
    let files: usize = leaks.iter().map(|l| l.val.len()).sum();
    Some(format!(
        "{files} validation photo(s) are copies of training photos (e.g. {} = {})",
        shown(&l.val[..1]),
        shown(&l.train[..1])
    ))
}

fn content_hash(p: &Path) -> Option<blake3::Hash> {
    let mut f = std::fs::File::open(p).ok()?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(h.finalize())
}

/// Groups of files with identical bytes, as indices into `files`, each group in input order
/// and the groups in the order of their first file. Only files that share their size with
/// another are read, so a folder without copies costs one `stat` per file. Empty and
/// unreadable files are left to the decoder to report.
pub fn identical(files: &[&Path]) -> Vec<Vec<usize>> {
    let sizes: Vec<Option<u64>> = files.par_iter().map(|p| std::fs::metadata(p).ok().map(|m| m.len())).collect();
    let mut by_size: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, s) in sizes.iter().enumerate() {
        if let Some(s) = s.filter(|&s| s > 0) {
            by_size.entry(s).or_default().push(i);
        }
    }
    let candidates: Vec<usize> = by_size.into_values().filter(|v| v.len() > 1).flatten().collect();
    let hashes: Vec<(usize, Option<blake3::Hash>)> =
        candidates.par_iter().map(|&i| (i, content_hash(files[i]))).collect();
    let mut by_hash: HashMap<blake3::Hash, Vec<usize>> = HashMap::new();
    for (i, h) in hashes {
        if let Some(h) = h {
            by_hash.entry(h).or_default().push(i);
        }
    }
    let mut groups: Vec<Vec<usize>> = by_hash
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect();
    groups.sort_unstable();
    groups
}

/// The duplicates among labelled files, and which of them are set aside by default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Found {
    pub conflicts: Vec<Conflict>,
    pub leaks: Vec<Leak>,
    /// Per file: every copy of a conflict, and the validation copies of a leak.
    pub set_aside: Vec<bool>,
}

/// Sorts groups of identical files (`labels[i]` is the class of `files[i]`, `in_val[i]`
/// whether it is a validation file) into label conflicts (copies under different classes)
/// and leaks (copies of one class in both training and validation).
pub fn find(files: &[&Path], labels: &[usize], in_val: &[bool], class_names: &[String]) -> Found {
    let mut found = Found { set_aside: vec![false; files.len()], ..Found::default() };
    for group in identical(files) {
        let mut ls: Vec<usize> = group.iter().map(|&i| labels[i]).collect();
        ls.sort_unstable();
        ls.dedup();
        let side = |val: bool| group.iter().filter(move |&&i| in_val[i] == val).map(|&i| files[i].to_path_buf());
        if ls.len() > 1 {
            found.conflicts.push(Conflict {
                classes: ls.iter().map(|&l| class_names[l].clone()).collect(),
                paths: group.iter().map(|&i| files[i].to_path_buf()).collect(),
            });
            group.iter().for_each(|&i| found.set_aside[i] = true);
        } else if group.iter().any(|&i| in_val[i]) && group.iter().any(|&i| !in_val[i]) {
            found.leaks.push(Leak {
                class: class_names[ls[0]].clone(),
                train: side(false).collect(),
                val: side(true).collect(),
            });
            group.iter().filter(|&&i| in_val[i]).for_each(|&i| found.set_aside[i] = true);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_identical_bytes_only() {
        let d = tempfile::tempdir().unwrap();
        let w = |n: &str, b: &[u8]| {
            let p = d.path().join(n);
            std::fs::write(&p, b).unwrap();
            p
        };
        // Same size, different bytes; two copies; a hard link; empty files never group.
        let ps = [w("a", b"abcd"), w("b", b"abce"), w("c", b"abcd"), w("e1", b""), w("e2", b""), w("x", b"0123456789")];
        std::fs::hard_link(&ps[5], d.path().join("y")).unwrap();
        let mut files: Vec<PathBuf> = ps.to_vec();
        files.push(d.path().join("y"));
        files.push(d.path().join("missing"));
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        assert_eq!(identical(&refs), vec![vec![0, 2], vec![5, 6]]);

        let names = vec!["ants".to_string(), "bees".to_string()];
        let f = find(&refs, &[0, 0, 1, 0, 1, 0, 0, 1], &[false; 8], &names);
        assert_eq!(
            f.conflicts,
            vec![Conflict { classes: names.clone(), paths: vec![files[0].clone(), files[2].clone()] }]
        );
        assert!(f.leaks.is_empty());
        assert_eq!(f.set_aside, [true, false, true, false, false, false, false, false]);
        // The hard-linked pair of one class split across training and validation is a leak.
        let f =
            find(&refs, &[0, 0, 1, 0, 1, 0, 0, 1], &[false, false, false, false, false, false, true, false], &names);
        assert_eq!(
            f.leaks,
            vec![Leak { class: "ants".into(), train: vec![files[5].clone()], val: vec![files[6].clone()] }]
        );
        assert_eq!(f.set_aside, [true, false, true, false, false, false, true, false]);
    }
}
