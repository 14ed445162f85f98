//! `retrain export triton`: a model file as a Triton model repository (`NAME/1/model.onnx`,
//! `NAME/config.pbtxt`, `NAME/labels.txt`) and a KServe `InferenceService` beside it, so the
//! same `.onnx` is served by Triton or KServe when one machine is not enough. Triton answers
//! the v2 protocol `retrain serve` speaks, with the same input and outputs.

use crate::{Result, ServeError};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// How the exported model is batched and where KServe finds the repository.
#[derive(Clone, Debug)]
pub struct TritonOptions {
    pub max_batch: usize,
    pub queue_delay_us: u64,
    /// Where the repository will be stored for KServe (`s3://…`, `gs://…`, `pvc://…`).
    pub storage_uri: String,
}

/// The files written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Exported {
    pub name: String,
    pub model: PathBuf,
    pub config: PathBuf,
    pub labels: PathBuf,
    pub inference_service: PathBuf,
}

/// Writes the repository for `model` under `dir` (named by the file stem).
pub fn export(model: &Path, dir: &Path, opts: &TritonOptions) -> Result<Exported> {
    let (bytes, info) = retrain::model::read(model)?;
    let proto = retrain_onnx::decode(&bytes, model).map_err(retrain::Error::from)?;
    let name = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    // labels.txt is one class a line, and the name is a folder, a protobuf string and a YAML
    // word: a line break or control character in either would make them say something else.
    if !retrain_files::names::is_label(&name) || name.contains(['/', '\\']) {
        return Err(ServeError::Name { path: model.to_path_buf(), what: "its file name", name });
    }
    if let Some(class) = info.class_names.iter().find(|c| !retrain_files::names::is_label(c)) {
        return Err(ServeError::Name { path: model.to_path_buf(), what: "a class name", name: class.clone() });
    }
    let graph = proto.graph.as_ref();
    let outputs: Vec<(String, Vec<i64>)> = graph
        .iter()
        .flat_map(|g| &g.output)
        .map(|o| {
            let dims = o
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
                .map(|s| s.dim.iter().skip(1).map(|d| d.dim_value.unwrap_or(-1)).collect())
                .unwrap_or_default();
            (o.name.clone(), dims)
        })
        .collect();
    let crop = info.preprocess.crop;
    let io = |e: std::io::Error, p: &Path| ServeError::Write { path: p.to_path_buf(), source: e };

    let root = dir.join(&name);
    let version = root.join("1");
    std::fs::create_dir_all(&version).map_err(|e| io(e, &version))?;
    let model_path = version.join("model.onnx");
    retrain_files::write_atomic(&model_path, &bytes, true).map_err(|e| io(e, &model_path))?;
    let labels = root.join("labels.txt");
    retrain_files::write_atomic(&labels, (info.class_names.join("\n") + "\n").as_bytes(), true)
        .map_err(|e| io(e, &labels))?;

    let mut c = String::new();
    let _ = writeln!(c, "# Written by `retrain export triton` from {}.", model.display().to_string().escape_debug());
    let _ = writeln!(c, "# The input is the photo resized and center-cropped ({crop}×{crop} RGB, uint8); the");
    let _ = writeln!(
        c,
        "# normalisation is inside the model. `tritonserver --model-repository {}`",
        dir.display().to_string().escape_debug()
    );
    if let Some(ml) = &info.multi_label {
        let _ = writeln!(
            c,
            "# Several labels per photo: `probabilities` are independent sigmoids; `labels` is 1 where a\n# class's probability reaches its threshold (in the graph): {:?}",
            ml.thresholds
        );
    }
    let _ = writeln!(c, "name: \"{}\"", quoted(&name));
    let _ = writeln!(c, "platform: \"onnxruntime_onnx\"");
    let _ = writeln!(c, "max_batch_size: {}", opts.max_batch);
    let _ = writeln!(
        c,
        "input [\n  {{\n    name: \"image\"\n    data_type: TYPE_UINT8\n    dims: [ {crop}, {crop}, 3 ]\n  }}\n]"
    );
    c += "output [\n";
    for (i, (o, dims)) in outputs.iter().enumerate() {
        // Triton batches along a first dimension it adds; an output of one value per image
        // ([batch] in the graph, as `ood_score`) is declared [1] and reshaped to [].
        let (dims, reshape): (Vec<String>, &str) = if dims.is_empty() {
            (vec!["1".into()], "\n    reshape: { shape: [ ] }")
        } else {
            (dims.iter().map(i64::to_string).collect(), "")
        };
        let label = match o.as_str() {
            "probabilities" | retrain::LABELS_OUTPUT => "\n    label_filename: \"labels.txt\"",
            _ => reshape,
        };
        let sep = if i + 1 < outputs.len() { "," } else { "" };
        let _ = writeln!(
            c,
            "  {{\n    name: \"{o}\"\n    data_type: TYPE_FP32\n    dims: [ {} ]{label}\n  }}{sep}",
            dims.join(", ")
        );
    }
    c += "]\n";
    let _ = writeln!(c, "dynamic_batching {{\n  max_queue_delay_microseconds: {}\n}}", opts.queue_delay_us);
    let config = root.join("config.pbtxt");
    retrain_files::write_atomic(&config, c.as_bytes(), true).map_err(|e| io(e, &config))?;

    // KServe names are DNS labels: lowercase letters, digits and '-'.
    let mut service: String =
        name.to_lowercase().chars().map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' }).collect();
    service = service.trim_matches('-').chars().take(63).collect();
    if service.is_empty() || !service.starts_with(|c: char| c.is_ascii_lowercase()) {
        service = format!("m-{service}").trim_end_matches('-').to_string();
    }
    let yaml = format!(
        "# KServe InferenceService for the Triton repository beside this file.\n\
         # Copy this folder (the repository; Triton reads only its model folders) to the storageUri\n\
         # below (--storage-uri), then: kubectl apply -f {name}.inferenceservice.yaml\n\
         apiVersion: serving.kserve.io/v1beta1\n\
         kind: InferenceService\n\
         metadata:\n  name: {service}\n\
         spec:\n  predictor:\n    model:\n      modelFormat:\n        name: triton\n      protocolVersion: v2\n      runtime: kserve-tritonserver\n      storageUri: \"{}\"\n",
        quoted(opts.storage_uri.trim_end_matches('/'))
    );
    let inference_service = dir.join(format!("{name}.inferenceservice.yaml"));
    retrain_files::write_atomic(&inference_service, yaml.as_bytes(), true).map_err(|e| io(e, &inference_service))?;
    Ok(Exported { name, model: model_path, config, labels, inference_service })
}

/// The inside of a double-quoted string in protobuf text format and YAML alike: backslash and
/// quote escaped, control characters as `\xNN` (both read those back as the same bytes).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoting_escapes_what_would_end_or_break_the_string() {
        assert_eq!(super::quoted(r#"we"ird\x"#), r#"we\"ird\\x"#);
        assert_eq!(super::quoted("a\tb"), r"a\x09b");
        assert_eq!(super::quoted("s3://bucket/models"), "s3://bucket/models");
    }
}
