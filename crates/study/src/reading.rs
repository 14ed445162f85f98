//! The study in one paragraph, the way a person would sum it up.

use crate::{Cell, Shots, Study};
use retrain::Strategy;

fn cell<'a>(study: &'a Study, model: &str, strategy: Strategy, shots: Shots) -> Option<&'a Cell> {
    study.summary.iter().find(|c| c.model == model && c.strategy == strategy && c.shots == shots)
}

fn acc(c: &Cell) -> String {
    match c.runs {
        1 => format!("{:.3}", c.val_accuracy),
        n => format!("{:.3} ± {:.3} (mean ± sd of {n})", c.val_accuracy, c.val_accuracy_sd),
    }
}

/// One paragraph: few-shot accuracy of the linear head, what all photos add, training from
/// scratch and fine-tuning against it (with the compute), and which backbone did best.
pub fn reading(study: &Study) -> String {
    let mut out = Vec::new();
    let total: usize = study.train_per_class.iter().sum();
    let mut models: Vec<&str> = study.summary.iter().map(|c| c.model.as_str()).collect();
    models.dedup();
    for model in &models {
        let linear: Vec<&Cell> =
            study.summary.iter().filter(|c| c.model == *model && c.strategy == Strategy::Linear).collect();
        let few = linear
            .iter()
            .find(|c| c.shots == Shots::PerClass(5))
            .or_else(|| linear.iter().find(|c| c.shots != Shots::All));
        let all = cell(study, model, Strategy::Linear, Shots::All);
        let ft = study.features.iter().find(|x| x.model == *model);
        if let Some(f) = few {
            let mut s = format!("With {} photos per class the linear head on {model} reaches {}", f.shots, acc(f));
            if let Some(a) = all {
                s += &format!("; with all {total} training photos {}", acc(a));
                // The fewest photos per class within two points of all of them.
                if let Some(k) = linear
                    .iter()
                    .filter(|c| c.shots != Shots::All && c.val_accuracy >= a.val_accuracy - 0.02)
                    .map(|c| c.shots)
                    .min()
                {
                    s += &format!(" ({k} per class already come within two points of that)");
                }
            }
            out.push(s + ".");
        } else if let Some(a) = all {
            out.push(format!("The linear head on {model} reaches {} with all {total} training photos.", acc(a)));
        }
        for strategy in [Strategy::Finetune, Strategy::Full, Strategy::Scratch] {
            let Some(c) = cell(study, model, strategy, Shots::All) else { continue };
            let what = match strategy {
                Strategy::Scratch => format!("Training {model} from scratch"),
                Strategy::Full => format!("Fine-tuning all of {model}"),
                _ => format!("Fine-tuning the upper blocks of {model}"),
            };
            let mut s = format!("{what} on all {total} photos reaches {}", acc(c));
            if let Some(a) = all {
                s += &format!(
                    ", {:+.3} against the linear head, in {:.0} s",
                    c.val_accuracy - a.val_accuracy,
                    c.seconds
                );
                // The linear head's compute is its features' (one forward pass per photo) and the
                // head; features read from the cache say nothing of their cost.
                match ft.filter(|x| x.computed == x.images && x.images > 0) {
                    Some(x) => {
                        let lin = a.seconds + x.seconds;
                        s += &format!(
                            ": {:.0}× the compute of the linear head ({lin:.1} s with its features)",
                            c.seconds / lin.max(1e-3)
                        );
                    }
                    None => s += " (the linear head's features came from the cache: time `retrain train --no-cache` for its cost)",
                }
            }
            out.push(s + ".");
        }
    }
    if models.len() > 1 {
        let mut best: Vec<(&str, f64)> = models
            .iter()
            .filter_map(|m| {
                study
                    .summary
                    .iter()
                    .filter(|c| c.model == *m && c.shots == Shots::All)
                    .map(|c| c.val_accuracy)
                    .fold(None, |b: Option<f64>, v| Some(b.map_or(v, |b| b.max(v))))
                    .map(|v| (*m, v))
            })
            .collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let [(m, v), rest @ ..] = best.as_slice() {
            let others: Vec<String> = rest.iter().map(|(m, v)| format!("{m} {v:.3}")).collect();
            out.push(format!(
                "With all photos {m} does best on this data ({v:.3}{}{}).",
                if others.is_empty() { "" } else { "; " },
                others.join(", ")
            ));
        }
    }
    for model in &models_with_layers(study) {
        let rows: Vec<&crate::LayerRow> = study.layers.iter().filter(|l| &l.model == model).collect();
        let Some(last) = rows.last() else { continue };
        let list: Vec<String> =
            rows.iter().map(|l| format!("{} ({}×{}) {:.3}", l.stage, l.size, l.size, l.val_accuracy)).collect();
        let mut s = format!("Stage by stage on {model} (linear head on each stage's pooled map): {}.", list.join(", "));
        let best =
            rows.iter().max_by(|a, b| a.val_accuracy.total_cmp(&b.val_accuracy).then(a.stage.cmp(&b.stage).reverse()));
        if let Some(b) = best.filter(|b| b.stage != last.stage && b.val_accuracy > last.val_accuracy) {
            s += &format!(
                " Stage {} beats the last ({:.3} vs {:.3}): these photos are far from ImageNet's objects; try `retrain train --model {model} --cut {}`.",
                b.stage, b.val_accuracy, last.val_accuracy, b.stage
            );
        } else {
            s += " The last stage is the best: the deep, ImageNet-specific features transfer here.";
        }
        out.push(s);
    }
    if out.is_empty() {
        return "No runs yet.".into();
    }
    out.join(" ")
}

fn models_with_layers(study: &Study) -> Vec<String> {
    let mut m: Vec<String> = study.layers.iter().map(|l| l.model.clone()).collect();
    m.dedup();
    m
}
