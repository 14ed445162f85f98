//! ONNX Runtime Web's files, got the way weights are: one pinned npm release, its tarball
//! sha256-checked and kept in retrain's cache, or given with `--ort-web` on a machine without
//! network. Each file copied into a page is checked against its own sha256 as well, so a
//! folder of another version is refused by name rather than half-working in the browser.

use crate::WebError;
use retrain_weights::{Source, WeightsSpec};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The release the page is built with: the same ONNX Runtime version retrain runs natively.
pub const VERSION: &str = "1.31.1";

const TARBALL: WeightsSpec = WeightsSpec {
    file_name: "onnxruntime-web-1.31.1.tgz",
    sha256: "bdccdb9fbb9ab537247c0c734e9b1d2b1b338b4f2a09faa58f0dc1cfa27c312c",
    sources: &[Source::Npm { package: "onnxruntime-web", version: VERSION }],
};

/// The files a page needs (the WebAssembly build with SIMD and threads, and its loader) and
/// their sha256, as published in the tarball's `package/dist/`.
pub const FILES: [(&str, &str); 3] = [
    ("ort.wasm.min.js", "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443"),
    ("ort-wasm-simd-threaded.mjs", "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3"),
    ("ort-wasm-simd-threaded.wasm", "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d"),
];

/// Largest file taken from a tarball or folder: the wasm is 15 MB; a bigger one is not ours.
const MAX_FILE: u64 = 64 << 20;

/// The three files' bytes, from `from` (an unpacked `onnxruntime-web` package, its `dist`
/// folder, a folder holding just the files, or the `.tgz`) or else from the cache, downloading
/// the tarball into it once.
pub fn files(from: Option<&Path>, quiet: bool) -> Result<Vec<(&'static str, Vec<u8>)>, WebError> {
    let got = match from {
        Some(p) if p.is_dir() => from_dir(p)?,
        Some(p) => from_tarball(p)?,
        None => {
            let dest = retrain_weights::cache_dir().join("ort-web").join(TARBALL.file_name);
            let offline = format!(
                "get onnxruntime-web {VERSION} elsewhere (`npm pack onnxruntime-web@{VERSION}`) and pass the .tgz or the unpacked package with --ort-web, or place the .tgz at {}",
                dest.display()
            );
            let tgz = retrain_weights::fetch_to(&TARBALL, dest, &offline, quiet)?;
            from_tarball(&tgz)?
        }
    };
    Ok(got)
}

fn from_dir(dir: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, WebError> {
    let candidates = [dir.join("package/dist"), dir.join("dist"), dir.to_path_buf()];
    let base = candidates.iter().find(|d| d.join(FILES[0].0).is_file()).ok_or_else(|| WebError::OrtWeb {
        path: dir.to_path_buf(),
        reason: format!(
            "holds no {} (nor dist/ or package/dist/ with it): give the unpacked onnxruntime-web {VERSION} npm package",
            FILES[0].0
        ),
    })?;
    FILES
        .iter()
        .map(|(name, sha)| {
            let path = base.join(name);
            let bytes = read_limited(&path)?;
            check(&path, &bytes, sha)?;
            Ok((*name, bytes))
        })
        .collect()
}

fn read_limited(path: &Path) -> Result<Vec<u8>, WebError> {
    let io = |source| WebError::Io { path: path.to_path_buf(), source };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(WebError::OrtWeb {
            path: path.to_path_buf(),
            reason: format!("larger than {} MB", MAX_FILE >> 20),
        });
    }
    Ok(bytes)
}

fn check(path: &Path, bytes: &[u8], want: &str) -> Result<(), WebError> {
    let got = hex::encode(sha2::Sha256::digest(bytes));
    if got != want {
        return Err(WebError::OrtWeb {
            path: path.to_path_buf(),
            reason: format!("sha256 is {got}, expected {want}: not the file of onnxruntime-web {VERSION}"),
        });
    }
    Ok(())
}

fn from_tarball(tgz: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, WebError> {
    let bad = |reason: String| WebError::OrtWeb { path: tgz.to_path_buf(), reason };
    let f = std::fs::File::open(tgz).map_err(|source| WebError::Io { path: tgz.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; FILES.len()];
    let entries = archive.entries().map_err(|e| bad(format!("not a .tgz: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable: {e}")))?;
        let name: PathBuf = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(i) = FILES.iter().position(|(f, _)| name == Path::new("package/dist").join(f)) else { continue };
        if entry.header().size().unwrap_or(u64::MAX) > MAX_FILE {
            return Err(bad(format!("{} is larger than {} MB", name.display(), MAX_FILE >> 20)));
        }
        let mut bytes = Vec::new();
        (&mut entry).take(MAX_FILE + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
        check(&tgz.join(&name), &bytes, FILES[i].1)?;
        found[i] = Some(bytes);
    }
    FILES
        .iter()
        .zip(found)
        .map(|((name, _), b)| b.map(|b| (*name, b)).ok_or_else(|| bad(format!("holds no package/dist/{name}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(dir: &Path, members: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("x.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn a_tarball_without_the_files_or_with_other_bytes_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let e = from_tarball(&tgz(t.path(), &[("package/README.md", b"hi")])).unwrap_err().to_string();
        assert!(e.contains("holds no package/dist/ort.wasm.min.js"), "{e}");
        let e = from_tarball(&tgz(t.path(), &[("package/dist/ort-wasm-simd-threaded.mjs", b"export {}")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("package/dist/ort-wasm-simd-threaded.mjs: sha256 is"), "{e}");
        assert!(e.contains("not the file of onnxruntime-web 1.31.1"), "{e}");
        std::fs::write(t.path().join("plain.txt"), "not gzip").unwrap();
        let e = from_tarball(&t.path().join("plain.txt")).unwrap_err().to_string();
        assert!(e.contains("plain.txt"), "{e}");
    }

    #[test]
    fn a_member_over_the_size_limit_is_not_read() {
        let t = tempfile::tempdir().unwrap();
        let big = vec![0u8; MAX_FILE as usize + 1];
        let e = from_tarball(&tgz(t.path(), &[("package/dist/ort-wasm-simd-threaded.wasm", &big)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("larger than 64 MB"), "{e}");
        std::fs::write(t.path().join("ort.wasm.min.js"), &big).unwrap();
        let e = from_dir(t.path()).unwrap_err().to_string();
        assert!(e.contains("larger than 64 MB"), "{e}");
    }
}
