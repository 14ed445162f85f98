//! `retrain explain`: heatmaps of where the evidence lies, or (`--layers`) what each stage sees.

use super::{create_folder, failures, write_png, Global};
use crate::args::{ExplainArgs, Format};
use anyhow::{bail, Result};
use retrain_files::names::{self, shown, shown_str};
use std::path::{Path, PathBuf};

pub fn run(a: ExplainArgs, g: Global) -> Result<()> {
    match a.layers {
        true => layers(&a.inputs, &a.out, a.format, a.pixels.limits(), g),
        false => explain(&a, g),
    }
}

fn layers(inputs: &[PathBuf], out: &Path, format: Format, limits: retrain::Limits, g: Global) -> Result<()> {
    if inputs.len() != 2 || inputs[1].is_dir() {
        bail!("--layers takes MODEL.onnx and one photo");
    }
    let l = retrain_explain::layers(&inputs[0], &inputs[1], g.threads, limits)?
        .map_err(|e| anyhow::anyhow!("{}: {}", inputs[1].display(), e.reason()))?;
    create_folder(out)?;
    let mut stages = Vec::new();
    for (i, s) in l.stages.iter().enumerate() {
        let png = out.join(format!("stage-{}.png", i + 1));
        write_png(&retrain_explain::render_stage(&l, i), &png)?;
        let mut v = serde_json::to_value(s)?;
        v["picture"] = serde_json::to_value(names::json::Json(&png))?;
        stages.push((v, png));
    }
    let filters = match &l.filters {
        Some(f) => {
            let png = out.join("filters.png");
            write_png(&retrain_explain::render_filters(f), &png)?;
            Some(png)
        }
        None => None,
    };
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({"path": names::json::Json(&inputs[1]), "stages": stages.iter().map(|(v, _)| v).collect::<Vec<_>>(), "filters": filters.as_deref().map(names::json::Json)})
        ),
        _ => {
            for (v, png) in &stages {
                println!("{}x{} {} channels\t{}", v["size"][0], v["size"][1], v["channels"], shown(png));
            }
            match &filters {
                Some(png) => println!("first convolution's filters\t{}", shown(png)),
                None if !g.quiet => eprintln!("warning: the first convolution's weights are not plain floats (an int8 model?): no filters picture"),
                None => {}
            }
        }
    }
    Ok(())
}

fn explain(a: &ExplainArgs, g: Global) -> Result<()> {
    let (inputs, out) = (&a.inputs, &a.out);
    let mut ex = retrain_explain::Explainer::open(&inputs[0], g.threads, a.occlusion)?;
    ex.limits = a.pixels.limits();
    let class = a.class.as_deref().map(|c| ex.class_index(c)).transpose()?;
    let threshold = retrain::model::threshold(&ex.info, &inputs[0], a.reject.reject)?;
    let (files, mut fails) = retrain::predict::expand_inputs(&inputs[1..]);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    let bar = retrain::progress_bar(0, "explain", g.quiet);
    let results = ex.explain(&paths, class, &bar)?;
    bar.finish_and_clear();
    create_folder(out)?;
    let mut done = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for ((path, explicit), r) in files.into_iter().zip(results) {
        match r {
            Ok(mut e) => {
                e.judge(threshold);
                // Photos of the same name from different folders get -2, -3 …
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
                let mut name = format!("{stem}.png");
                let mut n = 1;
                while !taken.insert(name.clone()) {
                    n += 1;
                    name = format!("{stem}-{n}.png");
                }
                let png = out.join(name);
                write_png(&retrain_explain::render(&e), &png)?;
                done.push((e, png));
            }
            Err(err) => fails.push(retrain::predict::Failure { reason: err.reason(), path, explicit }),
        }
    }
    match a.format {
        Format::Json => {
            let rows: Vec<_> = done
                .iter()
                .map(|(e, png)| {
                    let mut v = serde_json::to_value(e).expect("explanations serialise");
                    v["picture"] = serde_json::to_value(names::json::Json(png)).expect("paths serialise");
                    v
                })
                .collect();
            println!("{}", serde_json::to_string(&rows)?);
        }
        _ => {
            for (e, png) in &done {
                let mut top =
                    e.top.first().map(|r| format!("{} {:.4}", shown_str(&r.class), r.probability)).unwrap_or_default();
                if e.known == Some(false) {
                    top = format!("unknown (nearest: {top})");
                }
                println!("{}\t{}\texplained `{}`\t{}", shown(&e.path), top, shown_str(&e.class), shown(png));
            }
            if !g.quiet && !done.is_empty() {
                eprintln!("{} picture(s) in {} ({})", done.len(), out.display(), ex.method.name());
            }
        }
    }
    failures(&fails, done.len(), &inputs[1..], g.quiet)
}
