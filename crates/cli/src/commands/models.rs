//! `retrain models`: the backbones, fetching their weights, importing others.

use super::Global;
use crate::args::{Format, ModelsAction};
use anyhow::{bail, Result};

pub fn run(action: Option<ModelsAction>, format: Format, g: Global) -> Result<()> {
    match action {
        None => list(format),
        Some(ModelsAction::Fetch { name }) => {
            let b = retrain::find_backbone(&name)?;
            if b.imported.is_some() {
                bail!("{} is an imported model: its weights are in its ONNX file", b.name);
            }
            let path = retrain::fetch_weights(b, g.quiet)?;
            println!("{name}: {}", path.display());
            Ok(())
        }
        Some(ModelsAction::Import { file, name, input_size, resize, mean, std, feature_output, layout }) => {
            let layout = match layout.as_str() {
                "nchw" => retrain::imported::Layout::Nchw,
                "nhwc" => retrain::imported::Layout::Nhwc,
                other => bail!("--layout must be nchw or nhwc, got {other}"),
            };
            if mean.len() != 3 || std.len() != 3 {
                bail!("--mean and --std take three comma-separated values (R,G,B)");
            }
            let spec = retrain::imported::ImportSpec {
                name,
                input_size,
                resize: resize.unwrap_or((input_size as f32 * 8.0 / 7.0).round() as u32),
                mean: [mean[0] * 255.0, mean[1] * 255.0, mean[2] * 255.0],
                std: [std[0] * 255.0, std[1] * 255.0, std[2] * 255.0],
                feature_output,
                layout,
            };
            let b = retrain::imported::import(&file, &spec, g.threads)?;
            println!(
                "imported {} ({} features from `{}`); train with --model {}",
                b.name, b.feature_dim, b.feature_layer, b.name
            );
            Ok(())
        }
    }
}

fn list(format: Format) -> Result<()> {
    let all = retrain::all_backbones();
    let cached = |b: &retrain::Backbone| b.imported.is_some() || b.weights.is_cached();
    if format == Format::Json {
        let rows: Vec<_> = all
            .iter()
            .map(|b| serde_json::json!({"backbone": b, "weights": b.weights.file_name, "sha256": b.weights.sha256, "sources": b.weight_sources(), "cached": cached(b)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<19} {:>5} {:>8} {:>6} {:>8}  {:<22} {:<6} source",
        "name", "input", "params", "top-1", "features", "preprocessing", "cached"
    );
    for b in all {
        let p = b.preprocess;
        let interp = match p.interpolation {
            retrain::Filter::Bilinear => "bilinear",
            retrain::Filter::Bicubic => "bicubic",
        };
        let params = if b.params > 0 { format!("{:.1}M", b.params as f64 / 1e6) } else { "-".into() };
        let top1 = if b.imagenet_top1.is_finite() { format!("{:.1}%", b.imagenet_top1) } else { "-".into() };
        let source = match &b.imported {
            Some(i) => i.onnx.display().to_string(),
            None => b.weight_sources().first().cloned().unwrap_or_default(),
        };
        println!(
            "{:<19} {:>5} {:>8} {:>6} {:>8}  {:<22} {:<6} {}",
            b.name,
            p.crop,
            params,
            top1,
            b.feature_dim,
            format!("{}→{} {interp}", p.resize, p.crop),
            if cached(b) { "yes" } else { "no" },
            source
        );
    }
    Ok(())
}
