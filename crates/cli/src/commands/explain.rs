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
            Ok(e) => {
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
                // Several labels per photo: one picture per label the model gives (the top
                // class when it gives none), unless --class chose one.
                let given = match class {
                    None => ex.info.labels_of(&e.probabilities).filter(|l| !l.is_empty()),
                    Some(_) => None,
                };
                let mut each = Vec::new();
                match given {
                    None => each.push(e),
                    Some(labels) => {
                        let mut top = Some(e);
                        for l in labels {
                            if let Some(e) = top.take_if(|e| e.class_index == l) {
                                each.push(e);
                                continue;
                            }
                            let hidden = indicatif::ProgressBar::hidden();
                            match ex.explain(std::slice::from_ref(&path), Some(l), &hidden)?.pop() {
                                Some(Ok(e)) => each.push(e),
                                Some(Err(err)) => fails.push(retrain::predict::Failure {
                                    reason: err.reason(),
                                    path: path.clone(),
                                    explicit,
                                }),
                                None => {}
                            }
                        }
                        let p = |e: &retrain_explain::Explanation| e.probabilities[e.class_index];
                        each.sort_by(|a, b| p(b).total_cmp(&p(a)));
                    }
                }
                let several = each.len() > 1;
                for mut e in each {
                    e.judge(threshold);
                    let base = if several { format!("{stem}-{}", file_part(&e.class)) } else { stem.clone() };
                    // Photos of the same name from different folders get -2, -3 …
                    let mut name = format!("{base}.png");
                    let mut n = 1;
                    while !taken.insert(name.clone()) {
                        n += 1;
                        name = format!("{base}-{n}.png");
                    }
                    let png = out.join(name);
                    write_png(&retrain_explain::render(&e), &png)?;
                    done.push((e, png));
                }
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

/// A class name as part of a file name: letters, digits, `-` and `_` kept, anything else (a
/// separator, a dot, a space) as `_`, at most 40 characters.
fn file_part(class: &str) -> String {
    let part: String =
        class.chars().take(40).map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if part.is_empty() {
        "class".into()
    } else {
        part
    }
}

#[cfg(test)]
mod tests {
    use super::file_part;

    #[test]
    fn a_class_name_cannot_leave_the_folder_or_hide_a_picture() {
        assert_eq!(file_part("rose"), "rose");
        assert_eq!(file_part("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_part(".hidden"), "_hidden");
        assert_eq!(file_part("a b\\c:d"), "a_b_c_d");
        assert_eq!(file_part(""), "class");
        assert_eq!(file_part(&"x".repeat(300)).len(), 40);
    }
}
