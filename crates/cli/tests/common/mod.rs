//! What the end-to-end test files share: the real binary with a private cache, the paths
//! of the checkout and of `../shared`, and small data sets made from them.

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod server;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn shared(rel: &str) -> PathBuf {
    root().join("../shared").join(rel)
}

pub fn mnv2() -> PathBuf {
    shared("weights/mobilenet_v2-b0353104.pth")
}

/// The binary with a private cache folder, so tests neither share nor pollute caches.
pub fn retrain(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_retrain"));
    c.env("XDG_CACHE_HOME", cache);
    c
}

/// `retrain train DATA --quiet --weights <MobileNetV2> --out OUT EXTRA...` with a private cache.
pub fn train(home: &Path, data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = retrain(home);
    c.args(["train", data.to_str().unwrap(), "--quiet", "--weights"]).arg(mnv2()).arg("--out").arg(out).args(extra);
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("retrain runs")
}

/// Runs a command that must succeed; on failure, shows what it printed.
pub fn succeeds(cmd: &mut Command) -> Output {
    let out = run(cmd);
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "failed: {cmd:?}\nstdout: {so}\nstderr: {se}");
    out
}

/// Runs a command that must fail cleanly (exit 1, an `error:` line saying `needle`, no
/// panic); its stderr.
pub fn fails(cmd: &mut Command, needle: &str) -> String {
    let out = run(cmd);
    let se = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "should fail: {cmd:?}");
    assert_eq!(out.status.code(), Some(1), "{se}");
    assert!(se.contains("error: "), "{se}");
    assert!(se.contains(needle), "expected `{needle}` in: {se}");
    assert!(!se.contains("panicked"), "{se}");
    se
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

const MINI_CLASSES: [&str; 3] = ["daisy", "dandelion", "sunflower"];

/// The 16 photos of a class of the bundled flowers-mini set, sorted.
pub fn mini_photos(class: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/flowers-mini").join(class))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 16);
    files
}

/// A train/val copy of the bundled flowers-mini set: 12 train + 4 val photos per class.
pub fn mini_split(dir: &Path) -> PathBuf {
    let data = dir.join("mini");
    for class in MINI_CLASSES {
        let files = mini_photos(class);
        for (i, f) in files.iter().enumerate() {
            let split = if i < 12 { "train" } else { "val" };
            let to = data.join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    data
}

/// The bundled flowers-mini photos of three classes, the first `per_class` of each.
pub fn flowers_mini(dir: &Path, per_class: usize) -> PathBuf {
    for class in MINI_CLASSES {
        let files = mini_photos(class);
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for f in &files[..per_class] {
            let to = dir.join(class).join(f.file_name().unwrap());
            if !to.exists() {
                std::fs::copy(f, to).unwrap();
            }
        }
    }
    dir.to_path_buf()
}

/// Every file below `dir`.
pub fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_all(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The feature cache's entries below `dir`, sorted.
pub fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        walk_all(dir).into_iter().filter(|p| p.extension().is_some_and(|x| x == "feat")).collect();
    v.sort();
    v
}

/// A torchvision-named state dict of `model` with the parity fixture's synthetic tensors
/// (`tests/fixtures/parity/MODEL.json`), written as safetensors in `dir`: any zoo family
/// without downloading its weights (the accuracy is meaningless; the pipeline is the point).
pub fn synthetic_weights(dir: &Path, model: &str) -> PathBuf {
    let fx = read_json(&root().join(format!("tests/fixtures/parity/{model}.json")));
    let tensors: Vec<(String, Vec<u8>, Vec<usize>)> = fx["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t[0].as_str().unwrap().to_string();
            let shape: Vec<usize> = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let w = retrain_weights::synthetic(&name, &shape);
            (name, w.data.iter().flat_map(|v| v.to_le_bytes()).collect(), shape)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, b, s)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())
        })
        .collect();
    let w = dir.join(format!("{model}.safetensors"));
    std::fs::write(&w, safetensors::serialize(views, None).unwrap()).unwrap();
    w
}

/// What `tests/setup.sh` could not install for the browser tests, printed (past the test
/// harness's capture) when a test skips for it; if the script never ran, the test fails.
pub fn browser_unavailable() -> Option<PathBuf> {
    match std::fs::read_to_string(root().join(".browser/UNAVAILABLE")) {
        Ok(why) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: no browser for this test:\n{why}");
            None
        }
        Err(_) => panic!("no Chromium for the browser tests: run `bash tests/setup.sh`"),
    }
}

/// The headless Chromium `tests/setup.sh` found (or `RETRAIN_CHROMIUM`); `None`, said why,
/// where it could not be had.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RETRAIN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    match std::fs::read_to_string(root().join(".browser/chromium")) {
        Ok(p) => Some(PathBuf::from(p.trim())),
        Err(_) => browser_unavailable(),
    }
}

/// Chromium and Node.js with `playwright-core` (installed by `tests/setup.sh` into
/// `.browser/node_modules`), for tests that drive a page.
pub fn playwright() -> Option<PathBuf> {
    let chromium = chromium()?;
    if root().join(".browser/node_modules/playwright-core/package.json").exists() {
        Some(chromium)
    } else {
        browser_unavailable()
    }
}

/// onnxruntime-web as `tests/setup.sh` leaves it: the unpacked package and its tarball; where
/// setup could not get it (no npm), `None`, said why, as for the browser.
pub fn ort_web() -> Option<(PathBuf, PathBuf)> {
    let dir = root().join(".browser/onnxruntime-web");
    let tgz = root().join(".browser/onnxruntime-web-1.31.1.tgz");
    if dir.join("package/dist").is_dir() && tgz.is_file() {
        return Some((dir, tgz));
    }
    browser_unavailable()?;
    panic!("onnxruntime-web is not in .browser/: run `bash tests/setup.sh`")
}

/// The deploy tools' Python (`bash deploy/setup.sh`), if it has `module`. When PyPI could not be
/// reached, the reason setup.sh wrote is printed (past the test harness's capture) and the test
/// skips; when setup.sh was never run, the test fails saying so.
pub fn deploy_python(module: &str) -> Option<PathBuf> {
    let venv = root().join(".venv-deploy");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        std::process::Command::new(p).args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success())
    };
    if python.exists() && has(&python) {
        return Some(python);
    }
    match std::fs::read_to_string(venv.join("UNAVAILABLE")) {
        Ok(why) => {
            use std::io::Write;
            let mut err = std::io::stderr();
            let _ = writeln!(err, "SKIPPED: `{module}` could not be installed by deploy/setup.sh:\n{why}");
            None
        }
        Err(_) => panic!("`{module}` is not installed for the deploy tests: run `bash deploy/setup.sh`"),
    }
}

/// The first `n` hymenoptera validation photos of each class (ants, then bees), sorted.
pub fn hymenoptera_val(n: usize) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for class in ["ants", "bees"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(shared("data/hymenoptera/val").join(class)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        all.extend(files.into_iter().take(n));
    }
    all
}

/// Runs a command to its end and returns what it printed with its own peak resident memory
/// in MB (from `wait4`, so tests running beside it in this process do not count).
pub fn run_measured(cmd: &mut Command) -> (Output, f64) {
    use std::io::Read;
    use std::process::Stdio;
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("retrain runs");
    let (mut so, mut se) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        so.read_to_end(&mut b).unwrap();
        b
    });
    let mut stderr = Vec::new();
    se.read_to_end(&mut stderr).unwrap();
    let stdout = out.join().unwrap();
    let (mut status, mut usage): (libc::c_int, libc::rusage) = (0, unsafe { std::mem::zeroed() });
    // SAFETY: wait4 writes only the two values it is given; the child is ours and not yet reaped.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t);
    use std::os::unix::process::ExitStatusExt;
    let status = std::process::ExitStatus::from_raw(status);
    (Output { status, stdout, stderr }, usage.ru_maxrss as f64 / 1024.0)
}
