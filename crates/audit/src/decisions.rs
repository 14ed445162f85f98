//! Carrying out what a person decided on the audit page, and taking it back. A decisions file
//! names the folder it was made for and, for every photo it acts on, the photo's size and
//! content hash when the audit saw it; it is refused whole when it names another folder, a
//! photo that is not one of the folder's, a class the folder does not have, or a photo that
//! changed since. Nothing is deleted and nothing is overwritten: a photo moves to another class
//! folder or to the quarantine folder beside the data (`DATA.quarantine/`), by a hard link then
//! an unlink, and every batch is written to the undo log there before its first move.

use crate::{AuditError, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// The format's version, written by the page and checked here.
pub const VERSION: u32 = 1;

/// Largest decisions or log file read.
const MAX_FILE: u64 = 64 << 20;

/// What to do with a photo.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// To the class folder of this name beside its own.
    Move {
        to: String,
    },
    /// To the quarantine folder.
    SetAside,
    Keep,
}

/// A photo as the audit saw it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    pub size: u64,
    pub blake3: String,
}

impl Fingerprint {
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let mut h = blake3::Hasher::new();
        let size = std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
        Ok(Self { size, blake3: h.finalize().to_hex().to_string() })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Decision {
    /// Relative to the folder, as the page shows it.
    #[serde(with = "retrain_files::names::json")]
    pub path: PathBuf,
    #[serde(flatten)]
    pub seen: Fingerprint,
    #[serde(flatten)]
    pub action: Action,
}

/// What the page saves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Decisions {
    pub retrain_audit: u32,
    /// The folder audited, as an absolute path.
    #[serde(with = "retrain_files::names::json")]
    pub root: PathBuf,
    /// The label file the audit read the labels from (`--labels`), absolute.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "retrain_files::names::json::option")]
    pub labels: Option<PathBuf>,
    pub decisions: Vec<Decision>,
}

/// One file moved.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    #[serde(with = "retrain_files::names::json")]
    pub from: PathBuf,
    #[serde(with = "retrain_files::names::json")]
    pub to: PathBuf,
    #[serde(flatten)]
    pub seen: Fingerprint,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Written before the first move: some moves may have happened.
    Applying,
    Applied,
    Undone,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Batch {
    #[serde(with = "retrain_files::names::json")]
    pub decisions: PathBuf,
    pub state: State,
    pub moves: Vec<Move>,
}

/// The undo log: every batch applied to one folder, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Log {
    pub batches: Vec<Batch>,
}

/// What `apply` or `undo` did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Done {
    pub moved: usize,
    pub set_aside: usize,
    pub kept: usize,
    #[serde(with = "retrain_files::names::json")]
    pub log: PathBuf,
}

fn err(path: &Path, reason: impl Into<String>) -> AuditError {
    AuditError::Decisions { path: path.to_path_buf(), reason: reason.into() }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io { path: path.to_path_buf(), source }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let len = std::fs::metadata(path).map_err(io(path))?.len();
    if len > MAX_FILE {
        return Err(err(path, format!("{len} bytes: larger than the {MAX_FILE} a decisions file or log may be")));
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| err(path, format!("not a decisions file or log retrain can read: {e}")))
}

/// The folder beside `root` that set-aside photos go to, and that holds the undo log.
pub fn quarantine(root: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(root).map_err(io(root))?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => {
            let mut q = name.to_os_string();
            q.push(".quarantine");
            Ok(parent.join(q))
        }
        _ => Err(err(root, "has no parent folder to put a quarantine folder beside it")),
    }
}

pub fn log_path(root: &Path) -> Result<PathBuf> {
    Ok(quarantine(root)?.join("audit-log.json"))
}

fn read_log(path: &Path) -> Result<Log> {
    if path.exists() {
        read_json(path)
    } else {
        Ok(Log::default())
    }
}

fn write_log(path: &Path, log: &Log) -> Result<()> {
    let json = serde_json::to_vec_pretty(log).map_err(|e| err(path, e.to_string()))?;
    retrain_files::write_atomic(path, &json, true).map_err(io(path))
}

/// A path relative to the folder with nothing that leaves it (`..`, a root, a prefix).
fn plain(rel: &Path) -> bool {
    !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Moves `from` to `to`, which must not exist: a hard link fails rather than replace it.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists: nothing is overwritten".to_string()
        } else {
            format!("cannot link {} here: {e}", from.display())
        };
        err(to, why)
    })?;
    std::fs::remove_file(from).map_err(io(from))
}

/// What the audit suggests, photo by photo (a photo listed twice keeps the first that applies):
/// a stray is set aside (it is none of the classes, even when one fits it better than its
/// label); a likely mislabelled photo moves to the class it looks like when it is confidently
/// that class, else is set aside (measured: docs/audit.md); of a group of copies or a
/// leak all but the first (a training photo, when there is one) are set aside. Conflicts and
/// tiny images are for a person to judge.
pub fn suggestions(a: &crate::Audit) -> Vec<(PathBuf, Action)> {
    let mut out: Vec<(PathBuf, Action)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut add = |p: &Path, action: Action| {
        if seen.insert(p.to_path_buf()) {
            out.push((p.to_path_buf(), action));
        }
    };
    for s in &a.strays {
        add(&s.path, Action::SetAside);
    }
    for m in &a.mislabelled {
        let action = match m.action {
            crate::SuggestedAction::Move => Action::Move { to: m.suggested.clone() },
            crate::SuggestedAction::SetAside => Action::SetAside,
        };
        add(&m.path, action);
    }
    for d in a.duplicates.iter().filter(|d| d.kind != crate::Kind::Conflict) {
        for p in d.paths.iter().skip(1) {
            add(p, Action::SetAside);
        }
    }
    out
}

/// The decisions file that accepts every suggestion (`retrain audit --suggested FILE`), for a
/// script, or a person who trusts it, to apply.
pub fn suggested(a: &crate::Audited) -> Result<Decisions> {
    let root = a.root.canonicalize().map_err(io(&a.root))?;
    let mut decisions = Vec::new();
    for (path, action) in suggestions(&a.audit) {
        let Some(rel) = crate::relative(&path, &a.root) else { continue };
        let seen = Fingerprint::of(&path).map_err(io(&path))?;
        decisions.push(Decision { path: rel, seen, action });
    }
    Ok(Decisions { retrain_audit: VERSION, root, labels: a.label_file.clone(), decisions })
}

/// One `apply` or `undo` on a folder at a time: a second, from another process, is refused
/// instead of reading the same log and moving the same photos twice. An OS lock on the folder
/// itself (`flock`), so a killed process leaves nothing behind to clean up; none on Windows,
/// where a folder cannot be locked without keeping others from opening it.
struct Guard(#[allow(dead_code)] Option<std::fs::File>);

fn guard(root: &Path) -> Result<Guard> {
    #[cfg(unix)]
    {
        let f = std::fs::File::open(root).map_err(io(root))?;
        match f.try_lock() {
            Ok(()) => Ok(Guard(Some(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(err(
                root,
                "another `retrain audit apply` or `audit undo` is running on this folder: try again when it has finished",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(io(root)(e)),
        }
    }
    #[cfg(not(unix))]
    Ok(Guard(None))
}

/// Carries out `file`'s decisions on the folder they were made for (which `data`, when given,
/// must be). Refuses the whole file before moving anything when any decision cannot be done.
pub fn apply(file: &Path, data: Option<&Path>) -> Result<Done> {
    let d: Decisions = read_json(file)?;
    if d.retrain_audit != VERSION {
        return Err(err(file, format!("version {} (this retrain reads version {VERSION})", d.retrain_audit)));
    }
    if let Some(labels) = &d.labels {
        return Err(err(
            file,
            format!(
                "these decisions are on the labels of {}: `audit apply` moves photos between class folders and does \
                 not edit label files yet; make the changes listed in this file in the label file",
                labels.display()
            ),
        ));
    }
    let root = d.root.canonicalize().map_err(io(&d.root))?;
    if let Some(data) = data {
        let given = data.canonicalize().map_err(io(data))?;
        if given != root {
            return Err(err(file, format!("made for {}, not {}", root.display(), given.display())));
        }
    }
    let _held = guard(&root)?;
    let ds = retrain::dataset::scan(&root, None, 0.2, 0).map_err(retrain::Error::from)?;
    let photos: BTreeSet<&Path> = ds.train.iter().chain(&ds.val).map(|s| s.path.as_path()).collect();
    let classes: BTreeSet<&str> = ds.class_names.iter().map(String::as_str).collect();
    let quarantine = quarantine(&root)?;

    let mut problems = Vec::new();
    let mut moves = Vec::new();
    let (mut kept, mut seen_paths, mut targets) = (0, BTreeSet::new(), BTreeSet::new());
    let (mut moved, mut set_aside) = (0, 0);
    for dec in &d.decisions {
        let shown = dec.path.display();
        if !plain(&dec.path) {
            problems.push(format!("{shown}: not a path inside the folder"));
            continue;
        }
        if !seen_paths.insert(dec.path.clone()) {
            problems.push(format!("{shown}: decided twice"));
            continue;
        }
        let from = root.join(&dec.path);
        if !photos.contains(from.as_path()) {
            problems.push(format!("{shown}: not one of the folder's photos"));
            continue;
        }
        match Fingerprint::of(&from) {
            Ok(f) if f == dec.seen => {}
            Ok(_) => {
                problems.push(format!("{shown}: changed since the audit"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{shown}: {e}"));
                continue;
            }
        }
        let to = match &dec.action {
            Action::Keep => {
                kept += 1;
                continue;
            }
            Action::Move { to } => {
                let class_dir = from.parent().map(|p| p.with_file_name(to));
                match class_dir {
                    Some(dir)
                        if classes.contains(to.as_str()) && dir.is_dir() && Some(dir.as_path()) != from.parent() =>
                    {
                        moved += 1;
                        dir.join(from.file_name().unwrap_or_default())
                    }
                    _ => {
                        problems.push(format!("{shown}: `{to}` is not another class of the folder"));
                        continue;
                    }
                }
            }
            Action::SetAside => {
                set_aside += 1;
                quarantine.join(&dec.path)
            }
        };
        if to.symlink_metadata().is_ok() {
            problems.push(format!("{}: already exists: nothing is overwritten", to.display()));
        } else if !targets.insert(to.clone()) {
            problems.push(format!("{}: two photos would go there", to.display()));
        } else {
            moves.push(Move { from, to, seen: dec.seen.clone() });
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(err(file, format!("refused, nothing was moved ({n} problems): {}", problems.join("; "))));
    }
    std::fs::create_dir_all(&quarantine).map_err(io(&quarantine))?;
    let log_file = quarantine.join("audit-log.json");
    let mut log = read_log(&log_file)?;
    let abs_file = std::path::absolute(file).map_err(io(file))?;
    log.batches.push(Batch { decisions: abs_file, state: State::Applying, moves: moves.clone() });
    write_log(&log_file, &log)?;
    for m in &moves {
        if let Some(dir) = m.to.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        move_file(&m.from, &m.to)?;
    }
    if let Some(b) = log.batches.last_mut() {
        b.state = State::Applied;
    }
    write_log(&log_file, &log)?;
    Ok(Done { moved, set_aside, kept, log: log_file })
}

/// Takes back the last batch applied to `data`: each photo back where it was, checked to be
/// the one that was moved, never over a file.
pub fn undo(data: &Path) -> Result<Done> {
    let root = data.canonicalize().map_err(io(data))?;
    let _held = guard(&root)?;
    let log_file = log_path(&root)?;
    let mut log = read_log(&log_file)?;
    let Some(batch) = log.batches.iter_mut().rev().find(|b| b.state != State::Undone) else {
        return Err(err(&log_file, "nothing to undo"));
    };
    let mut problems = Vec::new();
    let mut back = Vec::new();
    for m in &batch.moves {
        match (m.to.symlink_metadata().is_ok(), m.from.symlink_metadata().is_ok()) {
            // Never moved (a batch cut short), or already back.
            (false, true) => {}
            (true, false) => match Fingerprint::of(&m.to) {
                Ok(f) if f == m.seen => back.push(m),
                Ok(_) => problems.push(format!("{}: changed since it was moved", m.to.display())),
                Err(e) => problems.push(format!("{}: {e}", m.to.display())),
            },
            (true, true) => problems.push(format!("{}: already exists: nothing is overwritten", m.from.display())),
            (false, false) => problems.push(format!("{}: gone from {}", m.from.display(), m.to.display())),
        }
    }
    if !problems.is_empty() {
        return Err(err(&log_file, format!("cannot undo, nothing was moved: {}", problems.join("; "))));
    }
    let mut counts: BTreeMap<bool, usize> = BTreeMap::new();
    let quarantine = quarantine(&root)?;
    for m in back.iter().rev() {
        move_file(&m.to, &m.from)?;
        *counts.entry(m.to.starts_with(&quarantine)).or_default() += 1;
    }
    batch.state = State::Undone;
    write_log(&log_file, &log)?;
    Ok(Done {
        moved: counts.get(&false).copied().unwrap_or(0),
        set_aside: counts.get(&true).copied().unwrap_or(0),
        kept: 0,
        log: log_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder of two classes, three photos each (tiny PNGs of distinct content).
    fn folder() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        for (c, class) in ["ants", "bees"].iter().enumerate() {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..3u8 {
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([c as u8 * 100 + i, 7, 9]));
                img.save(root.join(class).join(format!("{}{i}.png", &class[..1]))).unwrap();
            }
        }
        (tmp, root)
    }

    fn decide(root: &Path, rel: &str, action: Action) -> Decision {
        Decision { path: rel.into(), seen: Fingerprint::of(&root.join(rel)).unwrap(), action }
    }

    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        retrain::dataset::files_below(dir)
            .files
            .into_iter()
            .map(|f| (f.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&f).unwrap()))
            .collect()
    }

    fn write(tmp: &Path, d: &Decisions) -> PathBuf {
        let f = tmp.join("decisions.json");
        std::fs::write(&f, serde_json::to_vec(d).unwrap()).unwrap();
        f
    }

    #[test]
    fn decisions_on_a_label_file_are_refused_and_nothing_moves() {
        let (tmp, root) = folder();
        let root = root.canonicalize().unwrap();
        let before = snapshot(&root);
        let d = Decisions {
            retrain_audit: VERSION,
            root: root.clone(),
            labels: Some(root.join("labels.csv")),
            decisions: vec![decide(&root, "ants/a1.png", Action::Move { to: "bees".into() })],
        };
        let e = apply(&write(tmp.path(), &d), None).unwrap_err().to_string();
        assert!(e.contains("does not edit label files yet"), "{e}");
        assert_eq!(snapshot(&root), before);
    }

    #[test]
    fn apply_then_undo_leaves_the_folder_as_it_was() {
        let (tmp, root) = folder();
        let root = root.canonicalize().unwrap();
        let before = snapshot(&root);
        let d = Decisions {
            retrain_audit: VERSION,
            root: root.clone(),
            labels: None,
            decisions: vec![
                decide(&root, "ants/a1.png", Action::Move { to: "bees".into() }),
                decide(&root, "bees/b2.png", Action::SetAside),
                decide(&root, "bees/b0.png", Action::Keep),
            ],
        };
        let f = write(tmp.path(), &d);
        let done = apply(&f, Some(&root)).unwrap();
        assert_eq!((done.moved, done.set_aside, done.kept), (1, 1, 1));
        assert!(root.join("bees/b1.png").is_file() && !root.join("ants/a1.png").exists());
        assert!(tmp.path().join("data.quarantine/bees/b2.png").is_file());
        // Applying again finds the photos gone: refused, nothing moves.
        let e = apply(&f, None).unwrap_err().to_string();
        assert!(e.contains("not one of the folder's photos"), "{e}");
        let undone = undo(&root).unwrap();
        assert_eq!((undone.moved, undone.set_aside), (1, 1));
        assert_eq!(snapshot(&root), before);
        assert!(undo(&root).unwrap_err().to_string().contains("nothing to undo"));
    }

    #[test]
    fn stale_foreign_and_overwriting_decisions_are_refused_whole() {
        let (tmp, root) = folder();
        let root = root.canonicalize().unwrap();
        let before = snapshot(&root);
        let good = decide(&root, "ants/a0.png", Action::SetAside);
        let case = |decisions: Vec<Decision>, data: Option<&Path>| {
            let f =
                write(tmp.path(), &Decisions { retrain_audit: VERSION, root: root.clone(), labels: None, decisions });
            apply(&f, data).unwrap_err().to_string()
        };
        // Another folder.
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert!(case(vec![good.clone()], Some(&other)).contains("made for"));
        // A photo changed since the audit.
        let mut stale = decide(&root, "ants/a2.png", Action::SetAside);
        stale.seen.blake3 = "0".repeat(64);
        assert!(case(vec![good.clone(), stale], None).contains("ants/a2.png: changed since the audit"));
        // Outside the folder, not a class, twice.
        let mut escape = good.clone();
        escape.path = "../data/ants/a0.png".into();
        assert!(case(vec![escape], None).contains("not a path inside the folder"));
        assert!(case(vec![decide(&root, "ants/a1.png", Action::Move { to: "../x".into() })], None)
            .contains("is not another class"));
        assert!(case(vec![good.clone(), good.clone()], None).contains("decided twice"));
        // A photo of that name is already in the class it would move to.
        std::fs::copy(root.join("bees/b0.png"), root.join("bees/a9.png")).unwrap();
        std::fs::copy(root.join("ants/a1.png"), root.join("ants/a9.png")).unwrap();
        let e = case(vec![good.clone(), decide(&root, "ants/a9.png", Action::Move { to: "bees".into() })], None);
        assert!(e.contains("bees/a9.png: already exists"), "{e}");
        std::fs::remove_file(root.join("bees/a9.png")).unwrap();
        std::fs::remove_file(root.join("ants/a9.png")).unwrap();
        assert_eq!(snapshot(&root), before);
        assert!(!tmp.path().join("data.quarantine").exists());
    }

    #[test]
    fn files_that_are_not_decisions_are_refused_before_reading_them_whole() {
        let (tmp, root) = folder();
        let f = tmp.path().join("d.json");
        std::fs::write(&f, "{\"retrain_audit\": 1, \"root\": 3}").unwrap();
        assert!(apply(&f, None).unwrap_err().to_string().contains("not a decisions file"));
        let d = Decisions { retrain_audit: 2, root: root.clone(), labels: None, decisions: vec![] };
        std::fs::write(&f, serde_json::to_vec(&d).unwrap()).unwrap();
        assert!(apply(&f, None).unwrap_err().to_string().contains("version 2"));
        // Larger than the limit: refused from its size (a sparse file, never read).
        std::fs::File::create(&f).unwrap().set_len(MAX_FILE + 1).unwrap();
        assert!(apply(&f, None).unwrap_err().to_string().contains("larger than"));
    }

    #[test]
    fn undo_refuses_a_photo_changed_in_quarantine() {
        let (tmp, root) = folder();
        let root = root.canonicalize().unwrap();
        let f = write(
            tmp.path(),
            &Decisions {
                retrain_audit: VERSION,
                root: root.clone(),
                labels: None,
                decisions: vec![decide(&root, "ants/a0.png", Action::SetAside)],
            },
        );
        apply(&f, None).unwrap();
        std::fs::write(tmp.path().join("data.quarantine/ants/a0.png"), b"edited").unwrap();
        let e = undo(&root).unwrap_err().to_string();
        assert!(e.contains("changed since it was moved"), "{e}");
        assert!(!root.join("ants/a0.png").exists());
    }

    #[cfg(unix)]
    #[test]
    fn one_apply_or_undo_at_a_time() {
        let (tmp, root) = folder();
        let root = root.canonicalize().unwrap();
        let before = snapshot(&root);
        let decisions = vec![decide(&root, "ants/a0.png", Action::SetAside)];
        let f = write(tmp.path(), &Decisions { retrain_audit: VERSION, root: root.clone(), labels: None, decisions });
        // Another process's apply holds the folder (its lock is on its own open of the folder).
        let other = std::fs::File::open(&root).unwrap();
        other.try_lock().unwrap();
        let e = apply(&f, None).unwrap_err().to_string();
        assert!(e.contains("another `retrain audit apply` or `audit undo` is running"), "{e}");
        assert_eq!(snapshot(&root), before);
        drop(other);
        apply(&f, None).unwrap();
        let other = std::fs::File::open(&root).unwrap();
        other.try_lock().unwrap();
        assert!(undo(&root).unwrap_err().to_string().contains("is running on this folder"));
        drop(other);
        undo(&root).unwrap();
        assert_eq!(snapshot(&root), before);
    }
}
