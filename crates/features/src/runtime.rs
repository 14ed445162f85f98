use crate::FeatureError;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The ONNX Runtime release `setup.sh` installs and the Python package depends on; any 1.x from
/// [`ORT_MIN_MINOR`] on works (the `ort` crate is built against that API version).
pub const ORT_VERSION: &str = "1.31.1";
/// The oldest 1.x minor version whose C API the `ort` crate's `api-31` feature asks for.
pub const ORT_MIN_MINOR: u32 = 31;

/// Finds the ONNX Runtime shared library: `ORT_DYLIB_PATH`; else the `onnxruntime` Python
/// package of the environment the executable is installed in (`<env>/bin/retrain` or
/// `<env>\Scripts\retrain.exe`); else beside the executable, the retrain checkout's `.venv`,
/// `$VIRTUAL_ENV`, `./.venv`, `~/.local` and the system's site-packages and library folders.
pub fn runtime_library() -> Result<PathBuf, FeatureError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_dir() {
            let inside = find_in(&p).map(|l| format!(" ({} is inside)", l.display())).unwrap_or_default();
            return Err(FeatureError::RuntimeUnavailable(format!(
                "ORT_DYLIB_PATH={}: a folder, not the library file: point it at the libonnxruntime file{inside}, or unset it to search \
                 the Python environment retrain is installed in",
                p.display()
            )));
        }
        if !p.is_file() {
            return Err(FeatureError::RuntimeUnavailable(format!(
                "ORT_DYLIB_PATH={}: no such file; point it at a libonnxruntime file, or unset it to search \
                 the Python environment retrain is installed in",
                p.display()
            )));
        }
        return Ok(p);
    }
    let search = Search::from_exe(std::env::current_exe().ok().as_deref());
    if let Some(lib) = search.dirs.iter().find_map(|d| find_in(d)) {
        return Ok(lib);
    }
    Err(FeatureError::RuntimeMissing { searched: search.shown, python: pip_python() })
}

/// The version string the library at `lib` reports, read through `OrtGetApiBase` before
/// `ort` touches it, so a wrong library is an error that names it instead of a crash.
pub fn runtime_version(lib: &Path) -> Result<String, FeatureError> {
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "system" fn(u32) -> *const std::ffi::c_void,
        get_version_string: unsafe extern "system" fn() -> *const std::ffi::c_char,
    }
    let fail = |reason: String| FeatureError::RuntimeUnavailable(format!("{}: {reason}", lib.display()));
    // SAFETY: loading runs the library's initialisers; this is the file the user or the search
    // chose as ONNX Runtime, which `ort` would load next anyway.
    let library =
        unsafe { libloading::Library::new(lib) }.map_err(|e| fail(format!("cannot load ONNX Runtime: {e}")))?;
    // SAFETY: the symbol's type is OrtGetApiBase's in onnxruntime_c_api.h.
    let get_base = unsafe { library.get::<unsafe extern "system" fn() -> *const ApiBase>(b"OrtGetApiBase\0") }
        .map_err(|_| fail("not an ONNX Runtime library (it has no OrtGetApiBase)".into()))?;
    // SAFETY: OrtGetApiBase returns a pointer to a static struct, and GetVersionString a static
    // NUL-terminated string; both are checked for null.
    let version = unsafe {
        let base = get_base();
        if base.is_null() {
            return Err(fail("OrtGetApiBase returned nothing".into()));
        }
        let s = ((*base).get_version_string)();
        if s.is_null() {
            return Err(fail("ONNX Runtime reports no version".into()));
        }
        std::ffi::CStr::from_ptr(s).to_string_lossy().into_owned()
    };
    Ok(version)
}

/// Whether `version` ("1.31.1") is a runtime `ort` can drive: 1.x with x ≥ [`ORT_MIN_MINOR`].
fn supported(version: &str) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
    matches!((parts.next(), parts.next()), (Some(Some(1)), Some(Some(minor))) if minor >= ORT_MIN_MINOR)
}

/// The version of the library at `lib` when it is one retrain can drive, else an error that
/// names the file, its version and the `pip install` that fixes it.
pub fn runtime_check(lib: &Path) -> Result<String, FeatureError> {
    let version = runtime_version(lib)?;
    if supported(&version) {
        return Ok(version);
    }
    let which = if version.starts_with("1.") { "too old" } else { "not supported" };
    Err(FeatureError::RuntimeUnavailable(format!(
        "{}: ONNX Runtime {version} is {which}; retrain needs 1.{ORT_MIN_MINOR} or a newer 1.x.\n  \
         Install the tested one with `{} -m pip install onnxruntime=={ORT_VERSION}`",
        lib.display(),
        pip_python()
    )))
}

/// Checks the library's version, then hands it to `ort`.
fn load(lib: &Path) -> Result<ort::environment::Environment, String> {
    runtime_check(lib).map_err(|e| e.to_string())?;
    let builder = ort::init_from(lib).map_err(|e| format!("{}: cannot load ONNX Runtime: {e}", lib.display()))?;
    builder.with_name("retrain").build().map_err(|e| format!("{}: cannot start ONNX Runtime: {e}", lib.display()))
}

/// Whether this process tried to start ONNX Runtime and could not, so the command line can
/// give that failure its own exit code whichever error wrapped it.
pub fn runtime_failed() -> bool {
    matches!(ENV.get(), Some(Err(_)))
}

/// The folders searched, in order, and how they are shown in the error when none has it.
#[derive(Default)]
struct Search {
    dirs: Vec<PathBuf>,
    shown: Vec<String>,
}

impl Search {
    /// Where to look, in order, for an executable at `exe`.
    fn from_exe(exe: Option<&Path>) -> Self {
        let mut search = Search::default();
        let mut exes: Vec<PathBuf> = exe
            .iter()
            .flat_map(|e| [e.to_path_buf(), std::fs::canonicalize(e).unwrap_or_else(|_| e.to_path_buf())])
            .collect();
        exes.dedup();
        // pip, pipx, uv and `pip --user` put the binary in <env>/bin (Scripts on Windows) and
        // the onnxruntime package in that environment's site-packages.
        for exe in &exes {
            if let Some(env) = exe.parent().and_then(Path::parent) {
                search.site_packages(env);
            }
        }
        for exe in &exes {
            // target/release/retrain -> checkout root, so a source build finds its own .venv.
            for anc in exe.ancestors().skip(1).take(4) {
                search.dir(anc.to_path_buf());
                search.dir(anc.join("lib"));
                search.site_packages(&anc.join(".venv"));
            }
        }
        if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
            search.site_packages(Path::new(&v));
        }
        search.site_packages(Path::new(".venv"));
        if let Some(home) = std::env::var_os("HOME") {
            search.site_packages(&Path::new(&home).join(".local"));
        }
        for prefix in ["/usr/local", "/usr"] {
            search.site_packages(Path::new(prefix));
            search.dir(Path::new(prefix).join("lib"));
        }
        // Homebrew's onnxruntime on Apple silicon (on Intel Macs it is in /usr/local/lib).
        search.dir(PathBuf::from("/opt/homebrew/lib"));
        search
    }

    fn dir(&mut self, d: PathBuf) {
        if d.is_dir() {
            self.always(d);
        }
    }

    /// A folder shown in the error even when it does not exist: a package folder of an
    /// environment that exists, where `pip install onnxruntime` would put the library.
    fn always(&mut self, d: PathBuf) {
        if !self.dirs.contains(&d) {
            self.shown.push(d.display().to_string());
            self.dirs.push(d);
        }
    }

    /// `prefix`'s onnxruntime package folders: lib/python3.X/site-packages (Linux, macOS
    /// venvs), lib/python/site-packages (macOS `--user`), Lib/site-packages (Windows venvs),
    /// site-packages (Windows `--user`), and Debian's dist-packages.
    fn site_packages(&mut self, prefix: &Path) {
        let capi = Path::new("onnxruntime").join("capi");
        let mut any = false;
        let lib = prefix.join("lib");
        // A venv's lib64 is a link to its lib.
        let lib64 =
            Some(prefix.join("lib64")).filter(|l| std::fs::canonicalize(l).ok() != std::fs::canonicalize(&lib).ok());
        for lib in std::iter::once(lib).chain(lib64) {
            if let Ok(rd) = std::fs::read_dir(&lib) {
                let mut pythons: Vec<PathBuf> = rd
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                    .map(|e| e.path())
                    .collect();
                pythons.sort();
                for py in pythons {
                    for packages in ["site-packages", "dist-packages"] {
                        if py.join(packages).is_dir() {
                            any = true;
                            self.always(py.join(packages).join(&capi));
                        }
                    }
                }
            }
        }
        for packages in [Path::new("Lib").join("site-packages"), PathBuf::from("site-packages")] {
            if prefix.join(&packages).is_dir() {
                any = true;
                self.always(prefix.join(packages).join(&capi));
            }
        }
        let would_be = prefix.join("lib").join("python3*").join("site-packages").join(&capi).display().to_string();
        if !any && prefix.is_dir() && !self.shown.contains(&would_be) {
            // Say where it would be, so the user sees which environment was looked at.
            self.shown.push(would_be);
        }
    }
}

/// The Python whose `pip` installs into the environment searched first: the one beside this
/// executable, else `python3`.
fn pip_python() -> String {
    std::env::current_exe().ok().as_deref().and_then(python_beside).unwrap_or_else(|| "python3".into())
}

/// The Python interpreter installed beside the executable.
fn python_beside(exe: &Path) -> Option<String> {
    let dir = exe.parent()?;
    ["python", "python3", "python.exe"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn find_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_runtime_file))
        .collect();
    found.sort();
    found.pop()
}

/// libonnxruntime.so[.1.31.1] (Linux), libonnxruntime[.1.31.1].dylib (macOS), onnxruntime.dll
/// (Windows); not libonnxruntime_providers_shared.so and the like.
fn is_runtime_file(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
        || name.eq_ignore_ascii_case("onnxruntime.dll")
}

fn environment() -> Result<&'static ort::environment::Environment, FeatureError> {
    let env = ENV.get_or_init(|| {
        let lib = runtime_library().map_err(|e| e.to_string())?;
        load(&lib)
    });
    // The message already names the library (or says where it was looked for).
    env.as_ref().map_err(|reason| FeatureError::RuntimeUnavailable(reason.clone()))
}

/// Named float outputs of one run: name → (shape, row-major data).
pub type Outputs = Vec<(String, Vec<usize>, Vec<f32>)>;
/// Named uint8 outputs of one run, as [`Outputs`].
pub type BytesOutputs = Vec<(String, Vec<usize>, Vec<u8>)>;

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

    /// Runs a model on one named uint8 tensor and named int64 vectors; returns its uint8
    /// outputs (the web page's preprocessing graph, run here to check it against retrain's).
    pub fn run_u8(
        &mut self,
        image: (&str, Vec<usize>, Vec<u8>),
        ints: &[(&str, Vec<i64>)],
    ) -> Result<BytesOutputs, FeatureError> {
        let err = |e: ort::Error| FeatureError::Ort { what: self.what.clone(), reason: e.to_string() };
        let mut inputs: Vec<(String, ort::session::SessionInputValue)> = Vec::new();
        let (name, shape, data) = image;
        inputs.push((name.into(), ort::value::Tensor::from_array((shape, data)).map_err(err)?.into()));
        for (name, v) in ints {
            inputs.push(((*name).into(), ort::value::Tensor::from_array(([v.len()], v.clone())).map_err(err)?.into()));
        }
        let outputs = self.inner.run(inputs).map_err(err)?;
        let mut out = Vec::new();
        for (name, value) in outputs.iter() {
            let (shape, data) = value.try_extract_tensor::<u8>().map_err(err)?;
            out.push((name.to_string(), shape.iter().map(|&d| d as usize).collect(), data.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn only_1_x_from_the_api_version_is_supported() {
        assert!(supported("1.31.1"));
        assert!(supported(&format!("1.{ORT_MIN_MINOR}.0")));
        assert!(supported("1.40.0"));
        assert!(!supported("1.20.0"));
        assert!(!supported(&format!("1.{}.9", ORT_MIN_MINOR - 1)));
        assert!(!supported("2.0.0"));
        assert!(!supported("0.31.0"));
        assert!(!supported("garbage"));
        assert!(!supported(""));
    }

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"").unwrap();
    }

    fn found(exe: &Path) -> Option<PathBuf> {
        Search::from_exe(Some(exe)).dirs.iter().find_map(|d| find_in(d))
    }

    #[test]
    fn the_environment_the_binary_is_installed_in_is_searched_first() {
        let t = tempfile::tempdir().unwrap();
        // A Linux or macOS venv: <env>/bin/retrain, <env>/lib/python3.X/site-packages.
        let linux = t.path().join("venv");
        touch(&linux.join("bin/retrain"));
        let capi = linux.join("lib/python3.11/site-packages/onnxruntime/capi");
        touch(&capi.join("libonnxruntime.so.1.31.1"));
        touch(&capi.join("libonnxruntime_providers_shared.so"));
        touch(&capi.join("onnxruntime_pybind11_state.so"));
        assert_eq!(found(&linux.join("bin/retrain")), Some(capi.join("libonnxruntime.so.1.31.1")));
        assert_eq!(Search::from_exe(Some(&linux.join("bin/retrain"))).dirs[0], capi);

        let mac = t.path().join("mac");
        touch(&mac.join("bin/retrain"));
        let capi = mac.join("lib/python3.12/site-packages/onnxruntime/capi");
        touch(&capi.join("libonnxruntime.1.31.1.dylib"));
        assert_eq!(found(&mac.join("bin/retrain")), Some(capi.join("libonnxruntime.1.31.1.dylib")));

        // A Windows venv: <env>\Scripts\retrain.exe, <env>\Lib\site-packages.
        let win = t.path().join("win");
        touch(&win.join("Scripts/retrain.exe"));
        let capi = win.join("Lib/site-packages/onnxruntime/capi");
        touch(&capi.join("onnxruntime.dll"));
        assert_eq!(found(&win.join("Scripts/retrain.exe")), Some(capi.join("onnxruntime.dll")));
    }

    #[test]
    fn the_missing_runtime_error_names_the_places_and_the_pip_that_fixes_it() {
        let t = tempfile::tempdir().unwrap();
        let env = t.path().join("venv");
        touch(&env.join("bin/retrain"));
        touch(&env.join("bin/python"));
        fs::create_dir_all(env.join("lib/python3.11/site-packages")).unwrap();
        let exe = env.join("bin/retrain");
        #[cfg(unix)]
        std::os::unix::fs::symlink("lib", env.join("lib64")).unwrap();
        let search = Search::from_exe(Some(&exe));
        let capi = env.join("lib/python3.11/site-packages/onnxruntime/capi");
        assert_eq!(search.shown[0], capi.display().to_string());
        assert!(!search.shown.iter().any(|s| s.contains("lib64")), "a venv's lib64 link is lib: {:?}", search.shown);
        let python = python_beside(&exe).unwrap();
        assert_eq!(python, env.join("bin/python").display().to_string());
        let msg = FeatureError::RuntimeMissing { searched: search.shown, python }.to_string();
        assert!(msg.contains(&capi.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("{} -m pip install onnxruntime=={ORT_VERSION}", env.join("bin/python").display())),
            "{msg}"
        );

        // An environment with no site-packages yet still shows where it was looked for.
        let bare = t.path().join("bare");
        touch(&bare.join("bin/retrain"));
        let shown = Search::from_exe(Some(&bare.join("bin/retrain"))).shown;
        assert!(shown[0].starts_with(&bare.join("lib").display().to_string()), "{shown:?}");
    }

    /// Builds a shared library that reports `version` from OrtGetApiBase, as ONNX Runtime does.
    fn fake_runtime(dir: &Path, version: Option<&str>) -> Option<PathBuf> {
        let src = dir.join("fake.c");
        let body = match version {
            Some(v) => format!(
                "typedef struct {{ const void* (*get_api)(unsigned); const char* (*get_version)(void); }} Base;\n\
                 static const void* api(unsigned v) {{ (void)v; return 0; }}\n\
                 static const char* ver(void) {{ return \"{v}\"; }}\n\
                 static const Base base = {{ api, ver }};\n\
                 const Base* OrtGetApiBase(void) {{ return &base; }}\n"
            ),
            None => "int not_onnxruntime(void) { return 1; }\n".into(),
        };
        fs::write(&src, body).unwrap();
        let lib = dir.join(format!("libonnxruntime.so.{}", version.unwrap_or("none")));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let ok = std::process::Command::new(&cc)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(&src)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(lib)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_too_old_too_new_or_foreign_library_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let Some(old) = fake_runtime(t.path(), Some("1.20.0")) else {
            panic!("this test builds a stand-in library with `cc` (or $CC), which failed");
        };
        assert_eq!(runtime_version(&old).unwrap(), "1.20.0");
        let e = load(&old).err().unwrap();
        assert!(e.contains("ONNX Runtime 1.20.0 is too old") && e.contains(&old.display().to_string()), "{e}");
        assert!(e.contains(&format!("onnxruntime=={ORT_VERSION}")), "{e}");

        let new = fake_runtime(t.path(), Some("2.0.0")).unwrap();
        let e = load(&new).err().unwrap();
        assert!(e.contains("ONNX Runtime 2.0.0 is not supported"), "{e}");

        let foreign = fake_runtime(t.path(), None).unwrap();
        let e = load(&foreign).err().unwrap();
        assert!(e.contains("not an ONNX Runtime library"), "{e}");

        let text = t.path().join("libonnxruntime.so.1.31.1");
        fs::write(&text, "not a library").unwrap();
        let e = load(&text).err().unwrap();
        assert!(e.contains("cannot load ONNX Runtime") && e.contains(&text.display().to_string()), "{e}");
    }

    #[test]
    fn the_real_runtime_reports_a_supported_version() {
        let lib = runtime_library().expect("ONNX Runtime for the tests: run `bash setup.sh`");
        let v = runtime_version(&lib).unwrap();
        assert!(supported(&v), "{}: {v}", lib.display());
    }

    #[test]
    fn setup_and_the_python_package_pin_the_runtime_version_declared_here() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let setup = fs::read_to_string(root.join("setup.sh")).unwrap();
        assert!(setup.contains(&format!("ORT_VERSION={ORT_VERSION}\n")), "setup.sh pins another onnxruntime");
        let pyproject = fs::read_to_string(root.join("pyproject.toml")).unwrap();
        assert!(
            pyproject.contains(&format!("\"onnxruntime=={ORT_VERSION};")),
            "pyproject.toml pins another onnxruntime"
        );
    }
}
