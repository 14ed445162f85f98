//! Walking a folder as people really have them. Links are followed (photos are linked in on
//! purpose), but a link back to an enclosing folder is a loop: it is reported once and not
//! followed, and no folder or file is walked twice. Dangling links, special files (pipes,
//! sockets, devices: reading a pipe would block the run) and unreadable folders are skipped
//! and reported; hidden files are ignored.

use crate::Skipped;
use std::collections::{HashMap, HashSet};
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// What a walk found: the files, sorted depth-first, and what it passed over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Walk {
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
}

/// A folder's or file's identity whatever the path that reached it: device and inode.
pub(crate) type Id = (u64, u64);

#[cfg(unix)]
fn id(m: &Metadata, _: &Path) -> Id {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn id(_: &Metadata, p: &Path) -> Id {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).hash(&mut h);
    (0, h.finish())
}

pub(crate) fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

fn kind(m: &Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    let _ = m;
    "not a regular file"
}

/// The identities of `dir`'s real folder and of every folder enclosing it: a link to any of
/// them leads back into the walk.
pub(crate) fn enclosing(dir: &Path) -> HashSet<Id> {
    let Ok(real) = std::fs::canonicalize(dir) else { return HashSet::new() };
    real.ancestors().filter_map(|a| std::fs::metadata(a).ok().map(|m| id(&m, a))).collect()
}

/// The identity of the folder or file `p` leads to.
pub(crate) fn folder_id(p: &Path) -> Option<Id> {
    std::fs::metadata(p).ok().map(|m| id(&m, p))
}

/// The sorted, non-hidden entries of a folder; what cannot be read is reported.
fn entries(dir: &Path, skipped: &mut Vec<Skipped>) -> Vec<PathBuf> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            skipped.push(Skipped { path: dir.to_path_buf(), reason: format!("cannot read folder: {e}") });
            return Vec::new();
        }
    };
    let mut v = Vec::new();
    for e in rd {
        match e {
            Ok(e) if !is_hidden(&e.path()) => v.push(e.path()),
            Ok(_) => {}
            Err(e) => skipped.push(Skipped { path: dir.to_path_buf(), reason: format!("cannot read an entry: {e}") }),
        }
    }
    v.sort();
    v
}

fn link_target(p: &Path) -> String {
    std::fs::read_link(p).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into())
}

/// Every non-hidden file below `dir`, depth-first in sorted order. Files that turn out not
/// to be images are reported later, when decoding, rather than dropped here.
pub fn files_below(dir: &Path) -> Walk {
    let mut out = Walk::default();
    let outer = enclosing(dir);
    let root_id = std::fs::metadata(dir).map(|m| id(&m, dir)).ok();
    let mut visited: HashSet<Id> = root_id.into_iter().collect();
    let mut files_seen: HashMap<Id, PathBuf> = HashMap::new();
    // An explicit stack, so that a deep tree cannot overflow the call stack.
    let mut stack: Vec<(std::vec::IntoIter<PathBuf>, Option<Id>)> =
        vec![(entries(dir, &mut out.skipped).into_iter(), root_id)];
    while let Some((next, _)) = stack.last_mut() {
        let Some(p) = next.next() else {
            stack.pop();
            continue;
        };
        let skip = |out: &mut Walk, reason: String| out.skipped.push(Skipped { path: p.clone(), reason });
        let lmeta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) => {
                skip(&mut out, format!("cannot read: {e}"));
                continue;
            }
        };
        let is_link = lmeta.file_type().is_symlink();
        let meta = if is_link {
            match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    skip(&mut out, format!("broken symbolic link (points to {}): {e}", link_target(&p)));
                    continue;
                }
            }
        } else {
            lmeta
        };
        let here = id(&meta, &p);
        if meta.is_dir() {
            if outer.contains(&here) || stack.iter().any(|(_, a)| *a == Some(here)) {
                let how = if is_link { format!("symbolic link to {}", link_target(&p)) } else { "folder".into() };
                skip(&mut out, format!("loop: this {how} leads back to a folder that encloses it; not followed"));
            } else if !visited.insert(here) {
                skip(&mut out, "a folder already walked through another path; not walked twice".into());
            } else {
                stack.push((entries(&p, &mut out.skipped).into_iter(), Some(here)));
            }
        } else if meta.is_file() {
            match files_seen.get(&here) {
                Some(first) => {
                    skip(&mut out, format!("the same file as {} (linked); read once", first.display()));
                }
                None => {
                    files_seen.insert(here, p.clone());
                    out.files.push(p);
                }
            }
        } else {
            skip(&mut out, format!("{}, not an image file", kind(&meta)));
        }
    }
    out
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, p.to_string_lossy().as_bytes()).unwrap();
    }

    fn names(w: &Walk, root: &Path) -> Vec<String> {
        w.files.iter().map(|f| f.strip_prefix(root).unwrap().display().to_string()).collect()
    }

    #[test]
    fn follows_links_once_and_reports_loops_dangling_links_and_pipes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("ants/a1.jpg"));
        touch(&r.join("ants/sub/a2.jpg"));
        touch(&r.join("ants/.hidden.jpg"));
        touch(&r.join("elsewhere/e1.jpg"));
        symlink("..", r.join("ants/loop")).unwrap();
        symlink(r, r.join("ants/sub/up")).unwrap();
        symlink(r.join("elsewhere"), r.join("ants/linked")).unwrap();
        symlink(r.join("elsewhere"), r.join("ants/linked_again")).unwrap();
        symlink(r.join("ants/a1.jpg"), r.join("ants/z_same.jpg")).unwrap();
        symlink(r.join("nothing.jpg"), r.join("ants/dangling.jpg")).unwrap();
        let fifo = r.join("ants/pipe.jpg");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());

        let w = files_below(&r.join("ants"));
        assert_eq!(names(&w, &r.join("ants")), ["a1.jpg", "linked/e1.jpg", "sub/a2.jpg"]);
        let reason = |name: &str| {
            w.skipped.iter().find(|s| s.path == r.join("ants").join(name)).map(|s| s.reason.clone()).unwrap_or_default()
        };
        assert!(reason("loop").contains("loop"), "{:?}", w.skipped);
        assert!(reason("sub/up").contains("loop"), "{:?}", w.skipped);
        assert!(reason("linked_again").contains("not walked twice"), "{:?}", w.skipped);
        assert!(reason("z_same.jpg").contains("read once"), "{:?}", w.skipped);
        assert!(reason("dangling.jpg").contains("broken symbolic link"), "{:?}", w.skipped);
        assert!(reason("pipe.jpg").contains("named pipe"), "{:?}", w.skipped);
        assert_eq!(w.skipped.len(), 6, "{:?}", w.skipped);
    }

    #[test]
    fn a_deep_tree_does_not_overflow_the_stack() {
        let d = tempfile::tempdir().unwrap();
        let mut p = d.path().to_path_buf();
        // Short names keep the path under PATH_MAX.
        for _ in 0..1500 {
            p.push("d");
        }
        std::fs::create_dir_all(&p).unwrap();
        touch(&p.join("x.jpg"));
        let w = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn({
                let root = d.path().to_path_buf();
                move || files_below(&root)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(w.files.len(), 1);
    }
}
