use crate::WeightsError;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// A float32 tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Named tensors as a torchvision `state_dict()` holds them.
pub type StateDict = BTreeMap<String, Tensor>;

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> Result<String, WeightsError> {
    let io = |source| WeightsError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads every floating-point tensor of a weights file. `.pth`/`.pt` files in PyTorch's zip
/// or legacy pickle format are parsed by a pickle reader that only rebuilds tensors and
/// plain containers (it never imports or calls Python code); safetensors files by header.
/// Integer tensors (BatchNorm's `num_batches_tracked`) are dropped: no graph uses them.
pub fn load_state_dict(path: &Path) -> Result<StateDict, WeightsError> {
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    if n == 0 {
        return Err(WeightsError::Format { path: path.to_path_buf(), reason: "the file is empty".into() });
    }
    if is_safetensors(&head[..n]) {
        load_safetensors(path)
    } else {
        load_pth(path)
    }
}

fn is_safetensors(head: &[u8]) -> bool {
    head.len() >= 9 && head[8] == b'{' && u64::from_le_bytes(head[..8].try_into().unwrap()) < (1 << 30)
}

fn format_err(path: &Path, reason: impl ToString) -> WeightsError {
    WeightsError::Format { path: path.to_path_buf(), reason: reason.to_string() }
}

fn load_pth(path: &Path) -> Result<StateDict, WeightsError> {
    let file = std::fs::File::open(path).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    match crate::allowlist::check_pth(std::io::BufReader::new(file)) {
        Ok(()) => {}
        Err(crate::allowlist::Refusal::Global(global)) => {
            return Err(WeightsError::Refused { path: path.to_path_buf(), global })
        }
        Err(crate::allowlist::Refusal::Malformed(why)) => return Err(format_err(path, why)),
    }
    let mut reader = pytorch_reader::PytorchReader::new(path).map_err(|e| format_err(path, e))?;
    // Training checkpoints wrap the weights: {"state_dict": {...}} or {"model": {...}}.
    if reader.is_empty() {
        for key in ["state_dict", "model"] {
            if let Ok(r) = pytorch_reader::PytorchReader::with_top_level_key(path, key) {
                if !r.is_empty() {
                    reader = r;
                    break;
                }
            }
        }
    }
    if reader.is_empty() {
        return Err(format_err(path, "it holds no tensors"));
    }
    let mut out = StateDict::new();
    for (name, t) in reader.into_tensors() {
        use pytorch_reader::DType as D;
        let bytes = t.read().map_err(|e| format_err(path, e))?;
        // The reader hands out native-endian bytes.
        let kind = match t.dtype() {
            D::F32 => Float::F32,
            D::F64 => Float::F64,
            D::F16 => Float::F16,
            D::BF16 => Float::Bf16,
            _ => continue,
        };
        let data = to_f32(&bytes, kind, cfg!(target_endian = "little"));
        out.insert(strip_module_prefix(&name), Tensor { shape: t.shape().to_vec(), data });
    }
    Ok(out)
}

fn load_safetensors(path: &Path) -> Result<StateDict, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io { path: path.to_path_buf(), source })?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format_err(path, e))?;
    let mut out = StateDict::new();
    for (name, view) in st.tensors() {
        use safetensors::Dtype as D;
        let b = view.data();
        // safetensors is little-endian by specification.
        let kind = match view.dtype() {
            D::F32 => Float::F32,
            D::F64 => Float::F64,
            D::F16 => Float::F16,
            D::BF16 => Float::Bf16,
            _ => continue,
        };
        let data = to_f32(b, kind, true);
        out.insert(strip_module_prefix(&name), Tensor { shape: view.shape().to_vec(), data });
    }
    if out.is_empty() {
        return Err(format_err(path, "it holds no floating-point tensors"));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Float {
    F32,
    F64,
    F16,
    Bf16,
}

/// Floating-point tensor bytes (little- or big-endian) as f32.
fn to_f32(b: &[u8], kind: Float, little: bool) -> Vec<f32> {
    fn word<const N: usize>(c: &[u8], little: bool) -> [u8; N] {
        let mut a: [u8; N] = c.try_into().expect("chunk of N bytes");
        if !little {
            a.reverse();
        }
        a
    }
    match kind {
        Float::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(word(c, little))).collect(),
        Float::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(word(c, little)) as f32).collect(),
        Float::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes(word(c, little)).to_f32()).collect(),
        Float::Bf16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes(word(c, little)).to_f32()).collect(),
    }
}

/// `nn.DataParallel` checkpoints prefix every key with `module.`.
fn strip_module_prefix(name: &str) -> String {
    name.strip_prefix("module.").unwrap_or(name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
    }

    #[test]
    fn reads_legacy_torchvision_pickle() {
        let sd = load_state_dict(&shared("weights/mobilenet_v2-b0353104.pth")).unwrap();
        let w = &sd["features.0.0.weight"];
        assert_eq!(w.shape, vec![32, 3, 3, 3]);
        assert_eq!(sd["classifier.1.weight"].shape, vec![1000, 1280]);
        // 314 entries minus the 52 integer `num_batches_tracked` counters.
        assert_eq!(sd.len(), 262);
        assert!(w.data.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn safetensors_round_trip_matches_pth() {
        let sd = load_state_dict(&shared("weights/mobilenet_v2-b0353104.pth")).unwrap();
        let subset: Vec<(String, safetensors::tensor::TensorView)> = sd
            .iter()
            .take(5)
            .map(|(k, t)| {
                let bytes: &[u8] = bytemuck_f32(&t.data);
                (
                    k.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), bytes).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(subset, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        std::fs::write(&p, bytes).unwrap();
        let back = load_state_dict(&p).unwrap();
        assert_eq!(back.len(), 5);
        for (k, t) in &back {
            assert_eq!(t, &sd[k]);
        }
    }

    fn bytemuck_f32(v: &[f32]) -> &[u8] {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8.
        unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }
    }

    #[test]
    fn half_double_and_big_endian_floats_convert() {
        let h = half::f16::from_f32(1.5).to_le_bytes();
        assert_eq!(to_f32(&h, Float::F16, true), vec![1.5]);
        let b = half::bf16::from_f32(-2.0).to_be_bytes();
        assert_eq!(to_f32(&b, Float::Bf16, false), vec![-2.0]);
        assert_eq!(to_f32(&0.25f64.to_le_bytes(), Float::F64, true), vec![0.25]);
        assert_eq!(to_f32(&3.0f32.to_be_bytes(), Float::F32, false), vec![3.0]);
    }

    #[test]
    fn garbage_is_a_clear_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pth");
        std::fs::write(&p, b"this is not a checkpoint at all").unwrap();
        let e = load_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("bad.pth") && e.contains("not a readable weights file"), "{e}");
        std::fs::write(&p, b"").unwrap();
        assert!(load_state_dict(&p).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn pickles_calling_code_are_refused_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        // pickle.dumps({"features.0.0.weight": os.system("echo pwned > MARKER")}, protocol=2)
        // as Python writes it for an object whose __reduce__ returns (os.system, (cmd,)).
        let cmd = format!("echo pwned > {}", marker.display());
        let mut p2 = vec![0x80, 2, b'}', b'q', 0, b'X', 19, 0, 0, 0];
        p2.extend_from_slice(b"features.0.0.weight");
        p2.extend_from_slice(&[b'q', 1, b'c']);
        p2.extend_from_slice(b"posix\nsystem\n");
        p2.extend_from_slice(&[b'q', 2, b'X', cmd.len() as u8, 0, 0, 0]);
        p2.extend_from_slice(cmd.as_bytes());
        p2.extend_from_slice(&[b'q', 3, 0x85, b'q', 4, b'R', b'q', 5, b's', b'.']);
        // The same in protocol 0 text form.
        let p0 = format!("cos\nsystem\n(S'{cmd}'\ntR.").into_bytes();
        for (name, bytes) in [("p2.pth", p2), ("p0.pth", p0)] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = load_state_dict(&p).unwrap_err().to_string();
            let global = if name == "p2.pth" { "`posix.system`" } else { "`os.system`" };
            assert!(e.contains(name) && e.contains("refused") && e.contains(global), "{e}");
            assert!(e.contains("nothing in it was run"), "{e}");
        }
        assert!(!marker.exists(), "pickle code was executed");
    }

    /// The pickle `torch.save({"w": tensor_2x2}, f)` writes in its zip format: protocol 2, the
    /// storage named by a persistent id.
    const STATE_PKL: &[u8] = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00wq\x02ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07K\x04tq\x08QK\x00K\x02K\x02\x86q\tK\x02K\x01\x86q\n\x89ccollections\nOrderedDict\nq\x0b)Rq\x0ctq\rRq\x0es.";

    /// A `.pth` in PyTorch's zip format holding `pkl` and one storage of four floats.
    pub(crate) fn zip_pth(pkl: &[u8], values: &[f32; 4]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (name, bytes) in [
            ("archive/data.pkl", pkl.to_vec()),
            ("archive/byteorder", b"little".to_vec()),
            ("archive/data/0", data),
            ("archive/version", b"3\n".to_vec()),
        ] {
            w.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut w, &bytes).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn reads_the_zip_format_and_refuses_code_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.pth");
        std::fs::write(&p, zip_pth(STATE_PKL, &[1.0, 2.0, -3.0, 0.5])).unwrap();
        let sd = load_state_dict(&p).unwrap();
        assert_eq!(sd["w"], Tensor { shape: vec![2, 2], data: vec![1.0, 2.0, -3.0, 0.5] });
        // The tensor's backward hooks replaced by a call of `posix.system("ls")`.
        let hooks = b"ccollections\nOrderedDict\nq\x0b)Rq\x0c";
        let at = STATE_PKL.windows(hooks.len()).position(|w| w == hooks).unwrap();
        let pkl =
            [&STATE_PKL[..at], b"cposix\nsystem\nq\x0bX\x02\x00\x00\x00ls\x85Rq\x0c", &STATE_PKL[at + hooks.len()..]]
                .concat();
        std::fs::write(&p, zip_pth(&pkl, &[0.0; 4])).unwrap();
        let e = load_state_dict(&p).unwrap_err().to_string();
        assert!(e.contains("w.pth: refused") && e.contains("`posix.system`"), "{e}");
    }

    #[test]
    fn sha256_of_shared_weights_matches_sums() {
        let h = sha256_file(&shared("weights/mobilenet_v2-b0353104.pth")).unwrap();
        assert_eq!(h, "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889");
    }
}
