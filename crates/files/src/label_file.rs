//! Labels from a table instead of class folders (`--labels FILE`): a CSV with a header row
//! (`path,label`; `path,labels` holding several labels joined by a delimiter; or `path` and one
//! 0/1 column per class; an optional `split` column of `train`/`val`) or JSON lines
//! (`{"path": ..., "labels": [...], "split": ...}`). Paths are relative to the label file.

use crate::names::{is_label, shown};
use crate::{data_err, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// A label file larger than this is refused from its size alone (it is read whole, and its
/// rows take a few times its size): a million photos' rows take about a quarter of it.
pub const MAX_LABEL_FILE: u64 = 256 << 20;

/// Header names of the path column, the labels column and the split column (any case).
const PATH_COLUMNS: [&str; 4] = ["path", "image", "filename", "file"];
const LABEL_COLUMNS: [&str; 2] = ["label", "labels"];
const SPLIT_COLUMN: &str = "split";

/// Where a run's labels come from, and how to read them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelSource {
    #[serde(with = "crate::names::json")]
    pub file: PathBuf,
    /// What separates several labels in one CSV cell.
    pub delimiter: char,
    /// Leave out listed photos that do not exist (listed in the run's skipped files) instead
    /// of refusing the file.
    pub skip_missing: bool,
}

impl LabelSource {
    pub fn new(file: &Path) -> Self {
        Self { file: file.to_path_buf(), delimiter: '|', skip_missing: false }
    }
}

/// Which split a row puts its photo in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// One photo of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Resolved against the label file's folder.
    pub path: PathBuf,
    /// Sorted, without repeats.
    pub labels: Vec<String>,
    pub split: Option<Split>,
    /// Line of the label file (1 = the first).
    pub line: usize,
}

/// A label file read and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub entries: Vec<Entry>,
    /// Every label used, sorted.
    pub classes: Vec<String>,
    /// Listed photos that are not there, left out with `skip_missing`.
    pub missing: Vec<(PathBuf, usize)>,
}

impl Table {
    /// The first photo with other than one label, if any.
    pub fn first_multi(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.labels.len() != 1)
    }

    /// Refuses a table (read from `file`) where a photo has several labels, for what reads one
    /// label a photo (a model with a softmax).
    pub fn one_label_each(&self, file: &Path) -> Result<()> {
        match self.first_multi() {
            None => Ok(()),
            Some(e) => Err(data_err(
                file,
                format!(
                    "line {}: {} has {} labels ({}) but the model gives each photo one; a model trained \
                     with several labels per photo (--task multi-label) can be scored on this file",
                    e.line,
                    shown(&e.path),
                    e.labels.len(),
                    e.labels.join(", ")
                ),
            )),
        }
    }

    /// The listed photos left out as missing (`skip_missing`), as skipped files.
    pub fn skipped(&self) -> Vec<crate::Skipped> {
        let reason = |line| format!("listed on line {line} of the label file; not found");
        self.missing.iter().map(|(p, line)| crate::Skipped { path: p.clone(), reason: reason(line) }).collect()
    }

    /// Whether any row names a split.
    pub fn has_splits(&self) -> bool {
        self.entries.iter().any(|e| e.split.is_some())
    }
}

/// Reads and checks `src.file`: every row's path and labels, a path listed twice only with the
/// same labels, every listed photo present (else all missing ones are named, unless
/// `skip_missing`).
pub fn read(src: &LabelSource) -> Result<Table> {
    let file = &src.file;
    let meta = std::fs::metadata(file).map_err(|e| data_err(file, format!("cannot read the label file: {e}")))?;
    if !meta.is_file() {
        return Err(data_err(file, "the label file is not a regular file"));
    }
    if meta.len() > MAX_LABEL_FILE {
        return Err(data_err(
            file,
            format!("the label file is {} bytes, more than the {} a label file may be", meta.len(), MAX_LABEL_FILE),
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| data_err(file, format!("cannot read the label file: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        data_err(file, format!("the label file is not UTF-8 text (byte {}): save it as UTF-8", e.valid_up_to()))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let json_lines = matches!(ext.as_deref(), Some("jsonl" | "ndjson" | "json")) || text.trim_start().starts_with('{');
    let rows = if json_lines { json_rows(file, text)? } else { csv_rows(file, text, src.delimiter, ext.as_deref())? };
    let base = file.parent().unwrap_or(Path::new(""));
    let mut entries: Vec<Entry> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<PathBuf, usize> = HashMap::new();
    for row in rows {
        let at = |what: String| data_err(file, format!("line {}: {what}", row.line));
        if row.path.is_empty() {
            return Err(at("the path is empty".into()));
        }
        let mut labels = BTreeSet::new();
        for l in row.labels {
            if l.is_empty() {
                return Err(at(format!("an empty label for {}", row.path)));
            }
            if !is_label(&l) {
                return Err(at(format!("the label {l:?} has a tab, line break or other control character")));
            }
            labels.insert(l);
        }
        if labels.is_empty() {
            return Err(at(format!("{} has no label", row.path)));
        }
        let split = match row.split.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("train" | "training") => Some(Split::Train),
            Some("val" | "valid" | "validation") => Some(Split::Val),
            Some(other) => return Err(at(format!("the split is {other:?}; it must be train or val"))),
        };
        let entry = Entry { path: base.join(&row.path), labels: labels.into_iter().collect(), split, line: row.line };
        match seen.get(&entry.path) {
            Some(&k) if entries[k].labels == entry.labels && entries[k].split == entry.split => {}
            Some(&k) => {
                return Err(at(format!(
                    "{} is listed twice, differently: line {} says {} ({}), this line {} ({})",
                    row.path,
                    entries[k].line,
                    entries[k].labels.join(", "),
                    split_name(entries[k].split),
                    entry.labels.join(", "),
                    split_name(entry.split)
                )))
            }
            None => {
                seen.insert(entry.path.clone(), entries.len());
                entries.push(entry);
            }
        }
    }
    if entries.is_empty() {
        return Err(data_err(file, "the label file lists no photos"));
    }
    let (present, absent): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.path.is_file());
    let missing: Vec<(PathBuf, usize)> = absent.into_iter().map(|e| (e.path, e.line)).collect();
    if !missing.is_empty() && !src.skip_missing {
        let list: String = missing.iter().map(|(p, line)| format!("\n  line {line}: {}", shown(p))).collect();
        return Err(data_err(
            file,
            format!(
                "{} listed photo{} not found (--skip-missing leaves them out and goes on):{list}",
                missing.len(),
                if missing.len() == 1 { " is" } else { "s are" }
            ),
        ));
    }
    if present.is_empty() {
        return Err(data_err(file, "none of the photos the label file lists is there"));
    }
    let classes: BTreeSet<&String> = present.iter().flat_map(|e| &e.labels).collect();
    let classes = classes.into_iter().cloned().collect();
    Ok(Table { entries: present, classes, missing })
}

fn split_name(s: Option<Split>) -> &'static str {
    match s {
        None => "no split",
        Some(Split::Train) => "train",
        Some(Split::Val) => "val",
    }
}

/// A row as written, before it is checked.
struct Row {
    line: usize,
    path: String,
    labels: Vec<String>,
    split: Option<String>,
}

fn csv_rows(file: &Path, text: &str, delimiter: char, ext: Option<&str>) -> Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(if ext == Some("tsv") { b'\t' } else { b',' })
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    // The reader's own line count passes over blank lines; a record's byte offset is where the
    // blank lines before it begin.
    let line_at = |byte: u64| {
        let b = text.as_bytes();
        let mut at = (byte as usize).min(b.len());
        while at < b.len() && (b[at] == b'\n' || b[at] == b'\r') {
            at += 1;
        }
        b[..at].iter().filter(|&&c| c == b'\n').count() + 1
    };
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| line_at(p.byte())).unwrap_or(1);
        data_err(file, format!("line {line}: not readable as CSV: {e}"))
    };
    let header: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(str::to_string).collect();
    let find = |names: &[&str]| header.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)));
    let path_col = find(&PATH_COLUMNS).ok_or_else(|| {
        data_err(
            file,
            format!(
                "line 1: the header {header:?} has no path column: name it one of {PATH_COLUMNS:?} (the first row of \
                 the file must be its header)"
            ),
        )
    })?;
    let label_col = find(&LABEL_COLUMNS);
    let split_col = find(&[SPLIT_COLUMN]);
    // Without a labels column, every other column is a class holding 0 or 1.
    let class_cols: Vec<usize> = match label_col {
        Some(_) => Vec::new(),
        None => (0..header.len()).filter(|&c| c != path_col && Some(c) != split_col).collect(),
    };
    if label_col.is_none() && class_cols.is_empty() {
        return Err(data_err(
            file,
            format!(
                "line 1: the header {header:?} has no label column: name it `label` (or `labels`), or give one 0/1 \
                 column per class"
            ),
        ));
    }
    if let Some(&c) = class_cols.iter().find(|&&c| header[c].is_empty()) {
        return Err(data_err(
            file,
            format!("line 1: column {} has no name; a class column's name is its class", c + 1),
        ));
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map(|p| line_at(p.byte())).unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |c: usize| record.get(c).unwrap_or("");
        let labels = match label_col {
            Some(c) if cell(c).is_empty() => Vec::new(),
            Some(c) => cell(c).split(delimiter).map(|l| l.trim().to_string()).collect(),
            None => {
                let mut on = Vec::new();
                for &c in &class_cols {
                    match cell(c) {
                        "1" | "1.0" => on.push(header[c].clone()),
                        "0" | "0.0" | "" => {}
                        v => {
                            return Err(data_err(
                                file,
                                format!("line {line}: column `{}` holds {v:?}; a class column holds 0 or 1", header[c]),
                            ))
                        }
                    }
                }
                on
            }
        };
        let split = split_col.map(cell).filter(|s| !s.is_empty()).map(str::to_string);
        rows.push(Row { line, path: cell(path_col).to_string(), labels, split });
    }
    Ok(rows)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct JsonRow {
    #[serde(alias = "image", alias = "filename", alias = "file")]
    path: String,
    #[serde(alias = "label")]
    labels: OneOrMany,
    #[serde(default)]
    split: Option<String>,
}

fn json_rows(file: &Path, text: &str) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let r: JsonRow = serde_json::from_str(l).map_err(|e| {
            data_err(
                file,
                format!(
                    "line {}: not a label line ({e}); each line is {{\"path\": ..., \"labels\": [...], \"split\": \
                     \"train\"|\"val\"}}",
                    i + 1
                ),
            )
        })?;
        let labels = match r.labels {
            OneOrMany::One(l) => vec![l.trim().to_string()],
            OneOrMany::Many(v) => v.into_iter().map(|l| l.trim().to_string()).collect(),
        };
        rows.push(Row { line: i + 1, path: r.path, labels, split: r.split.filter(|s| !s.is_empty()) });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        d
    }

    fn read_text(d: &Path, name: &str, text: &str) -> Result<Table> {
        let f = d.join(name);
        std::fs::write(&f, text).unwrap();
        read(&LabelSource::new(&f))
    }

    fn err(r: Result<Table>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn path_and_label_columns_in_any_order_with_a_split() {
        let d = folder(&["img/a.jpg", "img/b.jpg", "img/c.jpg"]);
        let t = read_text(
            d.path(),
            "l.csv",
            "Label,Filename,split\ncat,img/a.jpg,train\ndog,img/b.jpg,val\n\ncat, img/c.jpg ,train\n",
        )
        .unwrap();
        assert_eq!(t.classes, vec!["cat", "dog"]);
        let got: Vec<(PathBuf, Vec<String>, Option<Split>, usize)> =
            t.entries.iter().map(|e| (e.path.clone(), e.labels.clone(), e.split, e.line)).collect();
        assert_eq!(
            got,
            vec![
                (d.path().join("img/a.jpg"), vec!["cat".into()], Some(Split::Train), 2),
                (d.path().join("img/b.jpg"), vec!["dog".into()], Some(Split::Val), 3),
                (d.path().join("img/c.jpg"), vec!["cat".into()], Some(Split::Train), 5),
            ]
        );
        assert!(t.first_multi().is_none());
    }

    #[test]
    fn several_labels_in_a_cell_and_one_hot_columns() {
        let d = folder(&["a.jpg", "b.jpg"]);
        let t = read_text(d.path(), "l.csv", "path,labels\na.jpg,\"beach| people\"\nb.jpg,beach\n").unwrap();
        assert_eq!(t.entries[0].labels, vec!["beach", "people"]);
        assert_eq!(t.first_multi().map(|e| e.line), Some(2));
        let mut src = LabelSource::new(&d.path().join("l.csv"));
        std::fs::write(&src.file, "path,labels\na.jpg,beach;people\n").unwrap();
        src.delimiter = ';';
        assert_eq!(read(&src).unwrap().entries[0].labels, vec!["beach", "people"]);
        // Roboflow's multi-label export: filename and a column per class, spaces after commas.
        let t = read_text(d.path(), "r.csv", "filename, people, beach\na.jpg, 1, 1\nb.jpg, 0, 1\n").unwrap();
        assert_eq!(t.classes, vec!["beach", "people"]);
        assert_eq!(t.entries[0].labels, vec!["beach", "people"]);
        assert_eq!(t.entries[1].labels, vec!["beach"]);
        let e = err(read_text(d.path(), "r.csv", "filename,people,beach\na.jpg,1,yes\n"));
        assert!(e.contains("line 2: column `beach` holds \"yes\""), "{e}");
        let e = err(read_text(d.path(), "r.csv", "filename,people,beach\na.jpg,0,0\n"));
        assert!(e.contains("line 2: a.jpg has no label"), "{e}");
    }

    #[test]
    fn json_lines_take_one_label_or_several() {
        let d = folder(&["a.jpg", "b.jpg"]);
        let t = read_text(
            d.path(),
            "l.jsonl",
            "{\"path\": \"a.jpg\", \"labels\": [\"x\", \"y\"], \"split\": \"val\"}\n\n{\"image\": \"b.jpg\", \"label\": \"x\"}\n",
        )
        .unwrap();
        assert_eq!(t.entries[0].labels, vec!["x", "y"]);
        assert_eq!(t.entries[0].split, Some(Split::Val));
        assert_eq!((t.entries[1].labels.clone(), t.entries[1].line), (vec!["x".to_string()], 3));
        let e = err(read_text(d.path(), "l.jsonl", "{\"path\": \"a.jpg\"}\n"));
        assert!(e.contains("line 1: not a label line"), "{e}");
    }

    #[test]
    fn headers_it_cannot_read_are_refused_naming_what_it_wants() {
        let d = folder(&["a.jpg"]);
        let e = err(read_text(d.path(), "l.csv", "a.jpg,cat\n"));
        assert!(e.contains("line 1: the header [\"a.jpg\", \"cat\"] has no path column"), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path\na.jpg\n"));
        assert!(e.contains("has no label column"), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path,label\na.jpg,cat,extra\n"));
        assert!(e.contains("not readable as CSV"), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path,label\n"));
        assert!(e.contains("lists no photos"), "{e}");
        let f = d.path().join("latin1.csv");
        std::fs::write(&f, b"path,label\na.jpg,caf\xe9\n").unwrap();
        assert!(err(read(&LabelSource::new(&f))).contains("not UTF-8"));
    }

    #[test]
    fn empty_labels_bad_splits_and_conflicting_repeats_are_refused() {
        let d = folder(&["a.jpg", "b.jpg"]);
        let e = err(read_text(d.path(), "l.csv", "path,label\na.jpg,\n"));
        assert!(e.contains("line 2: a.jpg has no label"), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path,labels\na.jpg,cat||dog\n"));
        assert!(e.contains("line 2: an empty label for a.jpg"), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path,label,split\na.jpg,cat,test\n"));
        assert!(e.contains("the split is \"test\""), "{e}");
        let e = err(read_text(d.path(), "l.csv", "path,label\na.jpg,cat\nb.jpg,dog\na.jpg,dog\n"));
        assert!(e.contains("line 4: a.jpg is listed twice, differently: line 2 says cat"), "{e}");
        // The same row twice is one photo.
        let t = read_text(d.path(), "l.csv", "path,label\na.jpg,cat\nb.jpg,dog\na.jpg,cat\n").unwrap();
        assert_eq!(t.entries.len(), 2);
        let e = err(read_text(d.path(), "l.jsonl", "{\"path\": \"a.jpg\", \"labels\": [\"c\\tx\"]}\n"));
        assert!(e.contains("control character"), "{e}");
    }

    #[test]
    fn missing_photos_are_all_named_or_left_out_when_asked() {
        let d = folder(&["a.jpg"]);
        let f = d.path().join("l.csv");
        std::fs::write(&f, "path,label\na.jpg,cat\ngone1.jpg,cat\nsub/gone2.jpg,dog\n").unwrap();
        let e = err(read(&LabelSource::new(&f)));
        assert!(e.contains("2 listed photos are not found (--skip-missing"), "{e}");
        assert!(e.contains("line 3: ") && e.contains("gone1.jpg") && e.contains("line 4: "), "{e}");
        let t = read(&LabelSource { skip_missing: true, ..LabelSource::new(&f) }).unwrap();
        assert_eq!(t.entries.len(), 1);
        assert_eq!(t.missing, vec![(d.path().join("gone1.jpg"), 3), (d.path().join("sub/gone2.jpg"), 4)]);
        // The classes are those of the photos kept.
        assert_eq!(t.classes, vec!["cat"]);
    }

    #[test]
    fn a_label_file_over_the_limit_is_refused_unread() {
        let d = folder(&[]);
        let f = d.path().join("huge.csv");
        std::fs::File::create(&f).unwrap().set_len(MAX_LABEL_FILE + 1).unwrap();
        let e = err(read(&LabelSource::new(&f)));
        assert!(e.contains("more than the 268435456"), "{e}");
        assert!(err(read(&LabelSource::new(d.path()))).contains("not a regular file"));
    }
}
