//! File names as retrain writes them, lossless whatever bytes they hold (a Latin-1 name from an
//! old zip archive, a tab or a newline in a name).
//!
//! - In JSON ([`json`]), a path is its string when it is UTF-8, and `{"bytes": BASE64}` of
//!   its raw bytes otherwise (ripgrep's convention for the same problem); both read back.
//! - In text and CSV output ([`shown`]), backslash, control characters (tab, newline...) and
//!   bytes that are not UTF-8 are written as escapes (`\t`, `\n`, `\\`, `\xE9`), so one record
//!   is always one line and its fields never shift.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// `path` for a line of text: escaped where it would be ambiguous, unchanged otherwise.
pub fn shown(path: &Path) -> Cow<'_, str> {
    let bytes = path.as_os_str().as_encoded_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => shown_str(s),
        Err(_) => Cow::Owned(escape(bytes)),
    }
}

/// A name (a class) for a line of text, escaped as [`shown`] escapes paths.
pub fn shown_str(name: &str) -> Cow<'_, str> {
    if name.chars().any(needs_escape) {
        Cow::Owned(escape(name.as_bytes()))
    } else {
        Cow::Borrowed(name)
    }
}

/// Whether `name` can be a class name as written: one line of `labels.txt`, one CSV cell, one
/// field of a text line, one protobuf or YAML string, with nothing escaped (no tab, line break
/// or other control character). The one rule `train` (class folders) and `export triton` apply.
pub fn is_label(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

/// A CSV field (RFC 4180): `text` quoted when it holds a comma, a quote or a line break.
pub fn csv(text: &str) -> Cow<'_, str> {
    if text.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", text.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(text)
    }
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control()
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.extend(c.escape_unicode()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// `#[serde(with = "retrain_files::names::json")]` for a `PathBuf`: a string, or
/// `{"bytes": BASE64}` when the path is not UTF-8.
pub mod json {
    use super::*;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr<'a> {
        Text(Cow<'a, str>),
        Bytes { bytes: String },
    }

    fn repr(path: &Path) -> Repr<'_> {
        let bytes = path.as_os_str().as_encoded_bytes();
        match std::str::from_utf8(bytes) {
            Ok(s) => Repr::Text(Cow::Borrowed(s)),
            Err(_) => Repr::Bytes { bytes: base64::engine::general_purpose::STANDARD.encode(bytes) },
        }
    }

    fn unrepr<E: serde::de::Error>(r: Repr<'_>) -> Result<PathBuf, E> {
        match r {
            Repr::Text(s) => Ok(PathBuf::from(s.into_owned())),
            Repr::Bytes { bytes } => {
                let raw = base64::engine::general_purpose::STANDARD.decode(bytes).map_err(E::custom)?;
                #[cfg(unix)]
                {
                    use std::os::unix::ffi::OsStringExt;
                    Ok(PathBuf::from(std::ffi::OsString::from_vec(raw)))
                }
                #[cfg(not(unix))]
                {
                    String::from_utf8(raw).map(PathBuf::from).map_err(E::custom)
                }
            }
        }
    }

    /// A path that serialises as [`json`](self) writes it, for values built by hand.
    pub struct Json<'a>(pub &'a Path);

    impl Serialize for Json<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            repr(self.0).serialize(s)
        }
    }

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        repr(path).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        unrepr(Repr::deserialize(d)?)
    }

    /// The same for `Vec<PathBuf>`.
    pub mod vec {
        use super::*;

        pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(paths.iter().map(|p| repr(p)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
            Vec::<Repr>::deserialize(d)?.into_iter().map(unrepr).collect()
        }
    }

    /// The same for `Option<PathBuf>`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
            path.as_deref().map(repr).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
            Option::<Repr>::deserialize(d)?.map(unrepr).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn latin1() -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        PathBuf::from(std::ffi::OsStr::from_bytes(b"photos/caf\xe9.jpg"))
    }

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Row {
        #[serde(with = "json")]
        path: PathBuf,
        #[serde(with = "json::vec")]
        more: Vec<PathBuf>,
        #[serde(with = "json::option")]
        maybe: Option<PathBuf>,
    }

    #[test]
    #[cfg(unix)]
    fn json_paths_are_strings_or_bytes_and_read_back() {
        let row = Row { path: latin1(), more: vec![PathBuf::from("a/b.jpg"), latin1()], maybe: None };
        let text = serde_json::to_string(&row).unwrap();
        assert_eq!(
            text,
            r#"{"path":{"bytes":"cGhvdG9zL2NhZukuanBn"},"more":["a/b.jpg",{"bytes":"cGhvdG9zL2NhZukuanBn"}],"maybe":null}"#
        );
        assert_eq!(serde_json::from_str::<Row>(&text).unwrap(), row);
    }

    #[test]
    #[cfg(unix)]
    fn labels_hold_no_control_character() {
        assert!(is_label("café au lait, 2") && is_label("a\\b"));
        assert!(!is_label("two\tfields") && !is_label("line\nbreak") && !is_label("bell\u{7}"));
    }

    #[test]
    fn shown_names_are_one_unambiguous_field() {
        assert_eq!(shown(Path::new("daisy/a b.jpg")), "daisy/a b.jpg");
        assert!(matches!(shown(Path::new("daisy/ok.jpg")), Cow::Borrowed(_)));
        assert_eq!(shown(&latin1()), "photos/caf\\xE9.jpg");
        assert_eq!(shown(Path::new("x/tab\there\nnew\\line.jpg")), "x/tab\\there\\nnew\\\\line.jpg");
        assert_eq!(shown(Path::new("bell\u{7}.jpg")), "bell\\u{7}.jpg");
        assert_eq!(shown_str("two\nlines"), "two\\nlines");
        assert_eq!(csv(&shown(&latin1())), "photos/caf\\xE9.jpg");
        assert_eq!(csv("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
