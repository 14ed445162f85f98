//! Finding ONNX Runtime: `--version` names the one loaded; a missing or broken one is one clear
//! error and exit code 2, before anything is written. (tests/wheel.sh does the same from an
//! installed wheel; crates/features has the too-old and too-new versions.)

mod common;

use common::{retrain, root, run, train};
use std::path::Path;
use std::process::Output;

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn version_names_retrain_and_the_runtime_it_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(retrain(tmp.path()).arg("--version"));
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{so}{se}");
    let lib = retrain_features::runtime_library().unwrap();
    let version = retrain_features::runtime_version(&lib).unwrap();
    assert_eq!(so, format!("retrain {}\nONNX Runtime {version} ({})\n", env!("CARGO_PKG_VERSION"), lib.display()));
    // The one setup.sh installs, which this test runs with.
    assert_eq!(version, retrain_features::ORT_VERSION);
}

fn refused(dylib: &Path, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out_model = tmp.path().join("m.onnx");
    let data = root().join("examples/flowers-mini");
    let out = run(train(tmp.path(), &data, &out_model, &[]).env("ORT_DYLIB_PATH", dylib));
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{so}{se}");
    assert!(se.starts_with("error: ") && se.contains(needle), "expected `{needle}` in: {se}");
    assert!(!se.contains("panicked"), "{se}");
    assert!(!out_model.exists(), "a model was written without a runtime");

    let out = run(retrain(tmp.path()).arg("--version").env("ORT_DYLIB_PATH", dylib));
    let (so, se) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{so}{se}");
    assert!(so.contains("ONNX Runtime: none") && se.contains(needle), "{so}{se}");
}

#[test]
fn a_missing_runtime_is_exit_code_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("libonnxruntime.so.1.31.1");
    refused(&gone, &format!("ORT_DYLIB_PATH={}: no such file", gone.display()));
}

#[test]
fn a_folder_given_for_the_runtime_is_named_with_the_library_inside_it() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("libonnxruntime.so.1.31.1"), "").unwrap();
    refused(
        tmp.path(),
        &format!(
            "ORT_DYLIB_PATH={}: a folder, not the library file: point it at the libonnxruntime file ({} is inside)",
            tmp.path().display(),
            tmp.path().join("libonnxruntime.so.1.31.1").display()
        ),
    );
}

#[test]
fn a_file_that_is_not_a_runtime_is_exit_code_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, "not a shared library").unwrap();
    refused(&fake, &format!("{}: cannot load ONNX Runtime", fake.display()));
}
