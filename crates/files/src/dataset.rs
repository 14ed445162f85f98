//! Finding the labelled files: one folder per class, optionally under `train/` and `val/`, or a
//! label file ([`scan_labels`]).

use crate::duplicates::{self, Conflict, Leak};
use crate::label_file::{self, LabelSource};
use crate::walk::{enclosing, files_below, folder_id, is_hidden};
use crate::{data_err, FilesError, Result, Skipped};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub path: PathBuf,
    /// Its label; with several (a label file's), the first in class order.
    pub label: usize,
    /// Its other labels, in class order (several-label data sets only).
    pub also: Vec<usize>,
}

impl Sample {
    pub fn new(path: PathBuf, label: usize) -> Self {
        Self { path, label, also: Vec::new() }
    }

    /// Every label of the photo, in class order.
    pub fn labels(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.label).chain(self.also.iter().copied())
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub class_names: Vec<String>,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    /// How the validation split was made, for the report.
    pub split: String,
    /// Entries the walk passed over (loops, dangling links, special files, unreadable folders).
    pub skipped: Vec<Skipped>,
    /// Photos whose content appears under more than one class.
    pub conflicts: Vec<Conflict>,
    /// Validation photos whose content is also a training photo of the same class.
    pub leaks: Vec<Leak>,
    /// Files below the data folder that a label file does not list (left out).
    pub unlisted: Vec<PathBuf>,
    /// Whether some photo has several labels (a label file's).
    pub multi_label: bool,
}

/// The class folders of a folder and their files.
#[derive(Clone, Debug, Default)]
pub struct Classes {
    /// (name, files), sorted by name.
    pub classes: Vec<(String, Vec<PathBuf>)>,
    pub skipped: Vec<Skipped>,
}

/// Class folders of `dir` and their files, sorted by name. A class folder that is `dir`
/// itself or a folder enclosing it (a link such as `all -> .`) is a loop, reported and
/// left out.
pub fn class_folders(dir: &Path) -> Result<Classes> {
    if !dir.exists() {
        return Err(data_err(dir, "no such folder"));
    }
    if !dir.is_dir() {
        return Err(data_err(dir, "not a folder; expected one sub-folder per class"));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| data_err(dir, format!("cannot read folder: {e}")))?;
    let mut dirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).filter(|p| !is_hidden(p) && p.is_dir()).collect();
    dirs.sort();
    let outer = enclosing(dir);
    let mut out = Classes::default();
    for p in dirs {
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            return Err(data_err(
                &p,
                "a class folder's name is its class name, and this one is not valid UTF-8: rename the folder",
            ));
        };
        // A class name is a line of labels.txt, a cell of CSV and text output: a tab or line
        // break in it would shift every label after it.
        if !crate::names::is_label(&name) {
            return Err(data_err(
                &p,
                format!(
                    "the class name {:?} has a tab, line break or other control character: rename the folder",
                    name
                ),
            ));
        }
        if folder_id(&p).is_some_and(|id| outer.contains(&id)) {
            out.skipped.push(Skipped {
                path: p.clone(),
                reason: "loop: this class folder is a link to a folder that encloses it; not followed".into(),
            });
            continue;
        }
        let walk = files_below(&p);
        out.skipped.extend(walk.skipped);
        if walk.files.is_empty() {
            return Err(data_err(&p, format!("class folder `{name}` holds no files")));
        }
        out.classes.push((name, walk.files));
    }
    if out.classes.is_empty() {
        return Err(data_err(
            dir,
            "no class folders found; expected one sub-folder per class (DATA_DIR/cats/*.jpg, DATA_DIR/dogs/*.jpg, ...)",
        ));
    }
    Ok(out)
}

/// Reads a dataset. `DATA_DIR/train` and `DATA_DIR/val` (or `valid`/`validation`), when both
/// exist, are the split; otherwise each class is split at random, `val_fraction` of it to
/// validation, reproducibly for a given `seed`.
pub fn scan(dir: &Path, val_dir: Option<&Path>, val_fraction: f64, seed: u64) -> Result<Dataset> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(FilesError::ValFraction(val_fraction));
    }
    let train_dir = dir.join("train");
    let found_val = ["val", "valid", "validation"].iter().map(|v| dir.join(v)).find(|p| p.is_dir());
    let (train_root, val_root) = match (val_dir, found_val) {
        (Some(v), _) => (if train_dir.is_dir() { train_dir } else { dir.to_path_buf() }, Some(v.to_path_buf())),
        (None, Some(v)) if train_dir.is_dir() => (train_dir, Some(v)),
        _ => (dir.to_path_buf(), None),
    };
    let Classes { classes, mut skipped } = class_folders(&train_root)?;
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
            let found = class_folders(&vr)?;
            skipped.extend(found.skipped);
            for (name, files) in found.classes {
                let label = class_names.iter().position(|c| *c == name).ok_or_else(|| {
                    data_err(
                        &vr.join(&name),
                        format!("validation class `{name}` is not among the training classes {class_names:?}"),
                    )
                })?;
                val.extend(files.into_iter().map(|path| Sample::new(path, label)));
            }
            let train = classes
                .into_iter()
                .enumerate()
                .flat_map(|(label, (_, f))| f.into_iter().map(move |path| Sample::new(path, label)))
                .collect();
            Ok(Dataset {
                class_names,
                train,
                val,
                split: format!("folders {} / {}", dir.join("train").display(), vr.display()),
                skipped,
                conflicts: Vec::new(),
                leaks: Vec::new(),
                unlisted: Vec::new(),
                multi_label: false,
            })
        }
        None => {
            let groups = classes
                .into_iter()
                .enumerate()
                .map(|(label, (_, f))| f.into_iter().map(|p| Sample::new(p, label)).collect())
                .collect();
            let train = random_split(groups, val_fraction, seed);
            Ok(Dataset {
                class_names,
                train: train.0,
                val: train.1,
                split: format!("stratified random, val fraction {val_fraction}, seed {seed}"),
                skipped,
                conflicts: Vec::new(),
                leaks: Vec::new(),
                unlisted: Vec::new(),
                multi_label: false,
            })
        }
    }
}

/// Each group's samples (a class's; with several labels per photo, those whose rarest label is
/// the class) split at random, `val_fraction` of each to validation (at least one when it has
/// two), reproducibly for a given `seed`.
fn random_split(groups: Vec<Vec<Sample>>, val_fraction: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for mut files in groups {
        files.shuffle(&mut rng);
        let n_val = if files.len() < 2 {
            0
        } else {
            ((files.len() as f64 * val_fraction).round() as usize).clamp(1, files.len() - 1)
        };
        for (i, s) in files.into_iter().enumerate() {
            if i < n_val {
                val.push(s)
            } else {
                train.push(s)
            }
        }
    }
    (train, val)
}

/// The files below `dir` that `table` (read from `file`) does not list, the label file itself
/// aside.
pub fn unlisted(dir: &Path, table: &label_file::Table, file: &Path) -> Vec<PathBuf> {
    let listed: std::collections::HashSet<PathBuf> =
        table.entries.iter().filter_map(|e| e.path.canonicalize().ok()).collect();
    let own = file.canonicalize().ok();
    files_below(dir)
        .files
        .into_iter()
        .filter(|p| p.canonicalize().map(|c| !listed.contains(&c) && Some(&c) != own.as_ref()).unwrap_or(true))
        .collect()
}

/// Reads a dataset from a label file (`--labels`): one label per photo; the file's `split`
/// column when it has one (every row then names one), else the random split of [`scan`]. The
/// files below `dir` that the label file does not list are returned in `unlisted`.
pub fn scan_labels(dir: &Path, src: &LabelSource, val_fraction: f64, seed: u64) -> Result<Dataset> {
    if !(val_fraction > 0.0 && val_fraction < 1.0) {
        return Err(FilesError::ValFraction(val_fraction));
    }
    if !dir.is_dir() {
        return Err(data_err(dir, "no such folder (the folder of the photos the label file lists)"));
    }
    let table = label_file::read(src)?;
    let class_names = table.classes.clone();
    if class_names.len() < 2 {
        return Err(data_err(
            &src.file,
            format!("only one class (`{}`) is used; a classifier needs at least two", class_names[0]),
        ));
    }
    let index = |l: &String| class_names.binary_search(l).unwrap_or(0);
    let sample = |e: &label_file::Entry| {
        let labels: Vec<usize> = e.labels.iter().map(index).collect();
        Sample { path: e.path.clone(), label: labels[0], also: labels[1..].to_vec() }
    };
    let mut count = vec![0usize; class_names.len()];
    for e in &table.entries {
        for l in &e.labels {
            count[index(l)] += 1;
        }
    }
    let rarest = |s: &Sample| s.labels().min_by_key(|&c| (count[c], c)).unwrap_or(s.label);
    let skipped = table.skipped();
    let (train, val, split) = if !table.has_splits() {
        let mut by_class = vec![Vec::new(); class_names.len()];
        for e in &table.entries {
            let s = sample(e);
            by_class[rarest(&s)].push(s);
        }
        let (t, v) = random_split(by_class, val_fraction, seed);
        (t, v, format!("stratified random, val fraction {val_fraction}, seed {seed}"))
    } else if let Some(e) = table.entries.iter().find(|e| e.split.is_none()) {
        return Err(data_err(
            &src.file,
            format!("line {}: no split, where other rows name one: give every row train or val, or none", e.line),
        ));
    } else {
        let (mut t, mut v) = (Vec::new(), Vec::new());
        for e in &table.entries {
            let s = sample(e);
            if e.split == Some(label_file::Split::Val) {
                v.push(s)
            } else {
                t.push(s)
            }
        }
        (t, v, format!("the split column of {}", crate::names::shown(&src.file)))
    };
    if train.is_empty() {
        return Err(data_err(&src.file, "no row is in the training split"));
    }
    let unlisted = unlisted(dir, &table, &src.file);
    let multi_label = table.first_multi().is_some();
    Ok(Dataset {
        class_names,
        train,
        val,
        split,
        skipped,
        conflicts: Vec::new(),
        leaks: Vec::new(),
        unlisted,
        multi_label,
    })
}

impl Dataset {
    /// Finds photos whose content appears twice: under two classes (a label conflict: every
    /// copy is left out of training and validation) or in both training and validation of
    /// one class (a leak: the validation copies are left out of the score). With `keep`,
    /// they are found and listed but nothing is left out. Returns how many samples were left out.
    pub fn set_aside_duplicates(&mut self, keep: bool) -> usize {
        let all: Vec<&Sample> = self.train.iter().chain(&self.val).collect();
        let paths: Vec<&Path> = all.iter().map(|s| s.path.as_path()).collect();
        let labels: Vec<usize> = all.iter().map(|s| s.label).collect();
        let in_val: Vec<bool> = (0..all.len()).map(|i| i >= self.train.len()).collect();
        let found = duplicates::find(&paths, &labels, &in_val, &self.class_names);
        self.conflicts = found.conflicts;
        self.leaks = found.leaks;
        if keep {
            return 0;
        }
        let mut keep_it = found.set_aside.iter().map(|aside| !aside);
        self.train.retain(|_| keep_it.next().unwrap_or(true));
        self.val.retain(|_| keep_it.next().unwrap_or(true));
        found.set_aside.iter().filter(|&&aside| aside).count()
    }
}

/// The indices of `per_class` random samples of each class (all of a class that has fewer),
/// reproducibly for `seed`, in their original order: the training photos of a few-shot run.
pub fn few_shot(samples: &[Sample], per_class: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let classes = samples.iter().map(|s| s.label + 1).max().unwrap_or(0);
    let mut keep = vec![false; samples.len()];
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..samples.len()).filter(|&i| samples[i].label == c).collect();
        idx.shuffle(&mut rng);
        for &i in idx.iter().take(per_class) {
            keep[i] = true;
        }
    }
    (0..samples.len()).filter(|&i| keep[i]).collect()
}

/// The fold (0..k) of each label for stratified k-fold cross-validation: each class is shuffled
/// (seeded) and dealt round the folds, so every fold holds about 1/k of every class.
pub fn stratified_folds(labels: &[usize], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let classes = labels.iter().map(|l| l + 1).max().unwrap_or(0);
    let mut fold = vec![0; labels.len()];
    let mut next = 0;
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == c).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % k.max(1);
            next += 1;
        }
    }
    fold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photos(dir: &Path, names: &[String]) {
        for n in names {
            let p = dir.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, n.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_label_file_gives_classes_splits_and_the_files_it_leaves_out() {
        let d = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..10).map(|i| format!("img/{i}.jpg")).collect();
        photos(d.path(), &names);
        photos(d.path(), &["img/extra.jpg".into(), "notes/readme.txt".into()]);
        let f = d.path().join("labels.csv");
        let rows: String = (0..10).map(|i| format!("img/{i}.jpg,{}\n", if i < 6 { "cat" } else { "dog" })).collect();
        std::fs::write(&f, format!("path,label\n{rows}")).unwrap();
        let src = LabelSource::new(&f);
        let ds = scan_labels(d.path(), &src, 0.25, 1).unwrap();
        assert_eq!(ds.class_names, vec!["cat", "dog"]);
        assert_eq!((ds.train.len(), ds.val.len()), (7, 3));
        assert_eq!(ds.val.iter().filter(|s| s.label == 0).count(), 2);
        assert!(ds.train.iter().chain(&ds.val).all(|s| {
            let i: usize = s.path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            s.label == usize::from(i >= 6)
        }));
        let mut unlisted = ds.unlisted.clone();
        unlisted.sort();
        assert_eq!(unlisted, vec![d.path().join("img/extra.jpg"), d.path().join("notes/readme.txt")]);
        // The same split as class folders holding the same files would get.
        assert_eq!(scan_labels(d.path(), &src, 0.25, 1).unwrap().val, ds.val);

        // A split column decides; every row must then have one.
        let rows: String = (0..10)
            .map(|i| format!("img/{i}.jpg,{},{}\n", ["cat", "dog"][i % 2], ["train", "val"][usize::from(i >= 8)]))
            .collect();
        std::fs::write(&f, format!("path,label,split\n{rows}")).unwrap();
        let ds = scan_labels(d.path(), &src, 0.25, 1).unwrap();
        assert_eq!((ds.train.len(), ds.val.len()), (8, 2));
        assert_eq!(ds.val[0].path, d.path().join("img/8.jpg"));
        std::fs::write(&f, format!("path,label,split\n{rows}img/extra.jpg,cat,\n")).unwrap();
        let e = scan_labels(d.path(), &src, 0.25, 1).unwrap_err().to_string();
        assert!(e.contains("line 12: no split, where other rows name one"), "{e}");

        // Several labels per photo: the first in class order is `label`, the others `also`.
        std::fs::write(&f, "path,labels\nimg/0.jpg,dog|cat\nimg/1.jpg,dog\nimg/2.jpg,cat\n").unwrap();
        let ds = scan_labels(d.path(), &src, 0.25, 1).unwrap();
        assert!(ds.multi_label);
        let all: Vec<&Sample> = ds.train.iter().chain(&ds.val).collect();
        let zero = all.iter().find(|s| s.path.ends_with("img/0.jpg")).unwrap();
        assert_eq!((zero.label, zero.also.clone()), (0, vec![1]));
        assert_eq!(zero.labels().collect::<Vec<_>>(), vec![0, 1]);
        std::fs::write(&f, "path,label\nimg/0.jpg,cat\nimg/1.jpg,cat\n").unwrap();
        let e = scan_labels(d.path(), &src, 0.25, 1).unwrap_err().to_string();
        assert!(e.contains("only one class (`cat`)"), "{e}");
    }

    #[test]
    fn few_shot_takes_that_many_per_class_seeded_and_folds_are_stratified() {
        let samples: Vec<Sample> =
            (0..30).map(|i| Sample::new(PathBuf::from(format!("{i}.jpg")), usize::from(i >= 20))).collect();
        let five = few_shot(&samples, 5, 3);
        assert_eq!(five.iter().filter(|&&i| samples[i].label == 0).count(), 5);
        assert_eq!(five.iter().filter(|&&i| samples[i].label == 1).count(), 5);
        assert_eq!(five, few_shot(&samples, 5, 3));
        assert_ne!(five, few_shot(&samples, 5, 4));
        assert_eq!(
            few_shot(&samples, 15, 0).iter().filter(|&&i| samples[i].label == 1).count(),
            10,
            "all of a small class"
        );
        let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
        let folds = stratified_folds(&labels, 5, 1);
        for f in 0..5 {
            let of = |c| (0..30).filter(|&i| folds[i] == f && labels[i] == c).count();
            assert_eq!((of(0), of(1)), (4, 2), "fold {f}");
        }
    }

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
            assert!(matches!(scan(hollow.path(), None, f, 0), Err(FilesError::ValFraction(_))));
        }
    }

    #[test]
    fn conflicts_and_leaks_are_found_listed_and_set_aside() {
        let d = tempfile::tempdir().unwrap();
        let put = |rel: &str, content: &str| {
            let p = d.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        };
        for i in 0..4 {
            put(&format!("train/ants/a{i}.jpg"), &format!("ant {i}"));
            put(&format!("train/bees/b{i}.jpg"), &format!("bee {i}"));
            put(&format!("val/ants/va{i}.jpg"), &format!("val ant {i}"));
            put(&format!("val/bees/vb{i}.jpg"), &format!("val bee {i}"));
        }
        put("train/bees/copy_of_a0.jpg", "ant 0"); // conflict: ants/a0 = bees/copy_of_a0
        put("val/ants/copy_of_a1.jpg", "ant 1"); // leak: the val copy of a train photo
        put("val/bees/copy_of_a2.jpg", "ant 2"); // conflict across train and val

        let mut ds = scan(d.path(), None, 0.2, 0).unwrap();
        let (train, val) = (ds.train.len(), ds.val.len());
        assert_eq!((train, val), (9, 10));
        assert_eq!(ds.set_aside_duplicates(false), 5);
        assert_eq!(ds.conflicts.len(), 2);
        assert_eq!(ds.conflicts[0].classes, ["ants", "bees"]);
        let conflicted: Vec<&Path> = ds.conflicts.iter().flat_map(|c| c.paths.iter().map(PathBuf::as_path)).collect();
        assert!(conflicted.contains(&d.path().join("train/bees/copy_of_a0.jpg").as_path()));
        assert_eq!(ds.leaks.len(), 1);
        assert_eq!(ds.leaks[0].class, "ants");
        assert_eq!(ds.leaks[0].val, [d.path().join("val/ants/copy_of_a1.jpg")]);
        assert_eq!(ds.leaks[0].train, [d.path().join("train/ants/a1.jpg")]);
        // No photo of a conflict is trained or scored, and the leaked copy is not scored.
        let all: Vec<&Path> = ds.train.iter().chain(&ds.val).map(|s| s.path.as_path()).collect();
        assert!(conflicted.iter().all(|p| !all.contains(p)));
        assert!(!all.contains(&d.path().join("val/ants/copy_of_a1.jpg").as_path()));
        assert!(all.contains(&d.path().join("train/ants/a1.jpg").as_path()));
        assert_eq!((ds.train.len(), ds.val.len()), (6, 8));

        // --keep-duplicates: the same lists, nothing left out.
        let mut kept = scan(d.path(), None, 0.2, 0).unwrap();
        assert_eq!(kept.set_aside_duplicates(true), 0);
        assert_eq!((kept.conflicts.len(), kept.leaks.len()), (2, 1));
        assert_eq!((kept.train.len(), kept.val.len()), (train, val));
    }

    #[cfg(unix)]
    #[test]
    fn a_class_folder_linked_to_its_parent_is_a_loop_not_a_class() {
        let d = tree(&[("cats", 2), ("dogs", 2)]);
        std::os::unix::fs::symlink(".", d.path().join("everything")).unwrap();
        std::os::unix::fs::symlink("..", d.path().join("cats/up")).unwrap();
        let ds = scan(d.path(), None, 0.5, 0).unwrap();
        assert_eq!(ds.class_names, ["cats", "dogs"]);
        assert_eq!(ds.train.len() + ds.val.len(), 4);
        assert_eq!(ds.skipped.len(), 2, "{:?}", ds.skipped);
        assert!(ds.skipped.iter().all(|s| s.reason.contains("loop")));
    }
}
