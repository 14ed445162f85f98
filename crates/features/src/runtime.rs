use crate::FeatureError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Finds the ONNX Runtime shared library: `ORT_DYLIB_PATH`, else beside the executable,
/// else the `onnxruntime` Python package in `$VIRTUAL_ENV`, `./.venv`, the retrain checkout's
/// `.venv` or the usual site-packages folders, else the system library folders.
pub fn runtime_library() -> Result<PathBuf, FeatureError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/release/retrain -> checkout root, so a source build finds its own .venv.
        for anc in exe.ancestors().skip(1).take(4) {
            dirs.push(anc.to_path_buf());
            dirs.push(anc.join("lib"));
            site_packages(&anc.join(".venv"), &mut dirs);
        }
    }
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        site_packages(Path::new(&v), &mut dirs);
    }
    site_packages(Path::new(".venv"), &mut dirs);
    if let Some(home) = std::env::var_os("HOME") {
        site_packages(&Path::new(&home).join(".local"), &mut dirs);
    }
    for prefix in ["/usr/local", "/usr"] {
        site_packages(Path::new(prefix), &mut dirs);
        dirs.push(Path::new(prefix).join("lib"));
    }
    for d in &dirs {
        if let Some(lib) = find_in(d) {
            return Ok(lib);
        }
    }
    Err(FeatureError::RuntimeMissing {
        searched: "ORT_DYLIB_PATH, the executable's folders, $VIRTUAL_ENV, ./.venv, ~/.local, /usr/local, /usr".into(),
    })
}

fn site_packages(prefix: &Path, out: &mut Vec<PathBuf>) {
    for lib in ["lib", "lib64"] {
        if let Ok(rd) = std::fs::read_dir(prefix.join(lib)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    out.push(e.path().join("site-packages/onnxruntime/capi"));
                    out.push(e.path().join("dist-packages/onnxruntime/capi"));
                }
            }
        }
    }
}

fn find_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib" || n == "onnxruntime.dll"
            })
        })
        .collect();
    found.sort();
    found.pop()
}

fn environment() -> Result<&'static ort::environment::Environment, FeatureError> {
    let env = ENV.get_or_init(|| {
        let lib = runtime_library().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&lib).map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", lib.display()))?;
        builder.with_name("retrain").build().map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", lib.display()))
    });
    // The message already names the library (or says where it was looked for).
    env.as_ref().map_err(|reason| FeatureError::RuntimeUnavailable(reason.clone()))
}

/// Named float outputs of one run: name → (shape, row-major data).
pub type Outputs = Vec<(String, Vec<usize>, Vec<f32>)>;

/// An ONNX Runtime session over one model, fed uint8 NHWC images.
pub struct Session {
    inner: ort::session::Session,
    what: String,
}

impl Session {
    /// Creates a session from model bytes. `what` names the model in errors; `threads` is
    /// ONNX Runtime's intra-op thread count.
    pub fn new(model: &[u8], what: &str, threads: usize) -> Result<Self, FeatureError> {
        let env = environment()?;
        let err = |e: String| FeatureError::Ort { what: what.into(), reason: e };
        let inner = ort::session::Session::builder(env)
            .map_err(|e| err(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| err(e.to_string()))?
            .with_intra_op_spinning(false)
            .map_err(|e| err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| err(e.to_string()))?
            .commit_from_memory(model)
            .map_err(|e| err(e.to_string()))?;
        Ok(Self { inner, what: what.into() })
    }

    /// Runs the model on `n` images of `size`×`size` RGB bytes and returns every float output.
    pub fn run(&mut self, pixels: Vec<u8>, n: usize, size: usize) -> Result<Outputs, FeatureError> {
        let err = |e: String| FeatureError::Ort { what: self.what.clone(), reason: e };
        let input = ort::value::Tensor::from_array(([n, size, size, 3], pixels)).map_err(|e| err(e.to_string()))?;
        let input_name = self.inner.inputs()[0].name().to_string();
        let outputs = self
            .inner
            .run(ort::inputs![input_name => input])
            .map_err(|e| FeatureError::Ort { what: self.what.clone(), reason: e.to_string() })?;
        let mut out = Vec::new();
        for (name, value) in outputs.iter() {
            let (shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| FeatureError::Ort { what: self.what.clone(), reason: e.to_string() })?;
            out.push((name.to_string(), shape.iter().map(|&d| d as usize).collect(), data.to_vec()));
        }
        Ok(out)
    }
}
