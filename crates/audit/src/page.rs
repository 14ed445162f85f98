//! The audit page: self-contained like `retrain report` (thumbnails as data: URIs, no network),
//! with one script: each photo's choices are radio buttons named after the photo, so a photo
//! listed in two sections still gets one decision, and "Save decisions" downloads the
//! decisions file `retrain audit apply` reads.

use crate::decisions::{Action, Fingerprint, VERSION};
use crate::{relative, Audited, Kind};
use rayon::prelude::*;
use retrain_report::escape;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Items drawn per section (the JSON lists every one).
const MAX_ITEMS: usize = 200;
const THUMB: u32 = 112;

const STYLE: &str = r#"
.items{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px}
.item{border:1px solid var(--line);border-radius:8px;padding:10px;font-size:13px;min-width:0;overflow-wrap:anywhere}
.item img.main{width:112px;height:112px;border-radius:4px;float:left;margin:0 10px 6px 0}
.item .ev{clear:both;display:flex;gap:4px;align-items:center;color:var(--muted);font-size:12px;margin-top:4px}
.item .ev img{width:44px;height:44px;border-radius:3px}
.item .ev span{min-width:86px}
.choice{clear:both;display:flex;flex-wrap:wrap;gap:4px 12px;margin-top:8px}
.choice label{cursor:pointer}.sug{font-weight:600}
.group{display:flex;flex-wrap:wrap;gap:10px;margin-top:6px}.member{width:128px;font-size:12px}
.member img{width:112px;height:112px;border-radius:4px;display:block}
.kind{font-weight:600;text-transform:uppercase;font-size:12px;letter-spacing:.04em}
.conflict{color:#c0392b}.leak{color:#b9770e}.copy{color:var(--muted)}
#save{position:sticky;top:0;z-index:5;background:#fafafa;padding:10px 0;border-bottom:1px solid var(--line);display:flex;gap:14px;align-items:center}
#save button{font:inherit;padding:6px 16px;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
"#;

const SCRIPT: &str = r#"
const data = JSON.parse(document.getElementById('audit-data').textContent);
function decisions() {
  const out = [];
  for (const input of document.querySelectorAll('input[type=radio]:checked')) {
    const f = data.files[input.name];
    if (!f || input.value === 'keep') continue;
    const d = {path: f.path, size: f.size, blake3: f.blake3};
    if (input.value === 'set_aside') d.action = 'set_aside';
    else { d.action = 'move'; d.to = input.value.slice(5); }
    out.push(d);
  }
  return {retrain_audit: data.version, root: data.root, labels: data.labels, decisions: out};
}
function count() {
  const n = decisions().decisions.length;
  document.getElementById('count').textContent = n + (n === 1 ? ' decision' : ' decisions');
}
document.addEventListener('change', count);
document.getElementById('save-button').addEventListener('click', () => {
  const blob = new Blob([JSON.stringify(decisions(), null, 1)], {type: 'application/json'});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'audit-decisions.json';
  document.body.appendChild(a);
  a.click();
  a.remove();
});
count();
"#;

#[derive(Serialize)]
struct FileRef {
    #[serde(with = "retrain_files::names::json")]
    path: PathBuf,
    size: u64,
    blake3: String,
}

#[derive(Serialize)]
struct Data {
    version: u32,
    #[serde(with = "retrain_files::names::json")]
    root: PathBuf,
    #[serde(with = "retrain_files::names::json::option")]
    labels: Option<PathBuf>,
    files: BTreeMap<String, FileRef>,
}

struct Ctx<'a> {
    a: &'a Audited,
    thumbs: BTreeMap<PathBuf, String>,
    /// Photo → its radio group's name (only photos below the folder, read when drawn).
    ids: BTreeMap<PathBuf, String>,
    /// Groups already drawn: a photo's "keep" is ticked where it first appears only, so that
    /// the page shows the one choice the browser keeps.
    drawn: std::cell::RefCell<std::collections::BTreeSet<String>>,
    suggested: BTreeMap<PathBuf, Action>,
}

impl Ctx<'_> {
    fn img(&self, p: &Path, class: &str) -> String {
        let src = self.thumbs.get(p).map(String::as_str).unwrap_or("");
        format!("<img class=\"{class}\" src=\"{src}\" alt=\"\" title=\"{}\">", escape(&p.display().to_string()))
    }

    fn shown(&self, p: &Path) -> String {
        let rel = relative(p, &self.a.root).unwrap_or_else(|| p.to_path_buf());
        escape(&rel.display().to_string())
    }

    /// Radio buttons: keep (ticked), then `options`, the audit's suggestion marked.
    fn choices(&self, p: &Path, options: &[Action]) -> String {
        let Some(id) = self.ids.get(p) else {
            return "<div class=\"choice\">(outside the folder: no action)</div>".into();
        };
        let checked = if self.drawn.borrow_mut().insert(id.clone()) { " checked" } else { "" };
        let mut h = format!(
            "<div class=\"choice\"><label><input type=\"radio\" name=\"{id}\" value=\"keep\"{checked}> keep</label>"
        );
        for action in options {
            let (value, label) = match action {
                Action::Move { to } => (format!("move:{to}"), format!("move to {to}")),
                Action::SetAside => ("set_aside".into(), "set aside".into()),
                Action::Keep => continue,
            };
            let suggested = self.suggested.get(p) == Some(action);
            let class = if suggested { " class=\"sug\"" } else { "" };
            let sug = if suggested { " (suggested)" } else { "" };
            let _ = write!(
                h,
                "<label{class}><input type=\"radio\" name=\"{id}\" value=\"{}\"> {}{sug}</label>",
                escape(&value),
                escape(&label)
            );
        }
        h + "</div>"
    }
}

fn section_head(h: &mut String, id: &str, title: &str, n: usize, note: &str) {
    let _ = write!(h, "<section id=\"{id}\"><h2>{title} ({n})</h2><p class=\"note\">{note}</p>");
    if n > MAX_ITEMS {
        let _ = write!(h, "<p class=\"note\">The first {MAX_ITEMS} are shown; the JSON (<code>--format json</code>) lists all {n}.</p>");
    }
}

/// The page of an audit. Reads the photos it shows (thumbnails, and the size and hash each
/// decision is checked against).
pub fn render(a: &Audited) -> String {
    let au = &a.audit;
    let mut shown: Vec<PathBuf> = Vec::new();
    for m in au.mislabelled.iter().take(MAX_ITEMS) {
        shown.push(m.path.clone());
        shown.extend(m.nearest_label.iter().chain(&m.nearest_suggested).map(|n| n.path.clone()));
    }
    for d in au.duplicates.iter().take(MAX_ITEMS) {
        shown.extend(d.paths.iter().cloned());
    }
    shown.extend(au.strays.iter().take(MAX_ITEMS).map(|s| s.path.clone()));
    shown.extend(au.tiny.iter().take(MAX_ITEMS).map(|t| t.path.clone()));
    shown.extend(au.next.iter().flatten().map(|s| s.path.clone()));
    shown.sort();
    shown.dedup();
    let thumbs: BTreeMap<PathBuf, String> = shown
        .par_iter()
        .filter_map(|p| {
            let px = retrain_pixels::load(p, a.geometry, a.limits).ok()?;
            let c = a.geometry.crop;
            let img = image::RgbImage::from_raw(c, c, px)?;
            Some((p.clone(), retrain_explain::jpeg_uri(&image::imageops::thumbnail(&img, THUMB, THUMB), 80)))
        })
        .collect();
    // Photos a decision can name: those in a section with choices, below the folder.
    let mut decidable: Vec<&Path> = Vec::new();
    decidable.extend(au.mislabelled.iter().take(MAX_ITEMS).map(|m| m.path.as_path()));
    for d in au.duplicates.iter().take(MAX_ITEMS) {
        decidable.extend(d.paths.iter().map(PathBuf::as_path));
    }
    decidable.extend(au.strays.iter().take(MAX_ITEMS).map(|s| s.path.as_path()));
    decidable.extend(au.tiny.iter().take(MAX_ITEMS).map(|t| t.path.as_path()));
    decidable.sort();
    decidable.dedup();
    let prints: Vec<(PathBuf, PathBuf, Fingerprint)> = decidable
        .par_iter()
        .filter_map(|p| Some((p.to_path_buf(), relative(p, &a.root)?, Fingerprint::of(p).ok()?)))
        .collect();
    let mut ids = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (i, (path, rel, f)) in prints.into_iter().enumerate() {
        let id = format!("f{i}");
        ids.insert(path, id.clone());
        files.insert(id, FileRef { path: rel, size: f.size, blake3: f.blake3 });
    }
    let root = std::path::absolute(&a.root).unwrap_or_else(|_| a.root.clone());
    let data = Data { version: VERSION, root, labels: a.label_file.clone(), files };
    let suggested = crate::decisions::suggestions(au).into_iter().collect();
    let ctx = Ctx { a, thumbs, ids, drawn: Default::default(), suggested };

    let folder = escape(&au.data.display().to_string());
    let mut h = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{folder} — retrain audit</title><style>{}{STYLE}</style></head><body><main>",
        retrain_report::STYLE
    );
    let _ = write!(
        h,
        "<h1>Audit of <code>{folder}</code></h1><p class=\"sub\">{} photos · {} classes · {} features · out-of-fold accuracy {:.1}%</p>",
        au.images,
        au.classes.len(),
        escape(&au.settings.backbone),
        100.0 * au.out_of_fold_accuracy
    );
    h += "<nav><a href=\"#mislabelled\">Mislabelled</a><a href=\"#duplicates\">Near-duplicates</a><a href=\"#strays\">Strays</a>\
          <a href=\"#classes\">Classes</a><a href=\"#tiny\">Tiny</a><a href=\"#next\">Label next</a></nav>";
    h += "<div id=\"save\"><button id=\"save-button\" type=\"button\">Save decisions</button><span id=\"count\"></span>\
          <span class=\"note\">then <code>retrain audit apply audit-decisions.json</code> (undo: <code>retrain audit undo DATA_DIR</code>)</span></div>";
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card\"><div class=\"k\">Likely mislabelled</div><div class=\"v\">{}</div></div>\
         <div class=\"card\"><div class=\"k\">Near-duplicate groups</div><div class=\"v\">{}</div></div>\
         <div class=\"card\"><div class=\"k\">Strays</div><div class=\"v\">{}</div></div>\
         <div class=\"card\"><div class=\"k\">Imbalance</div><div class=\"v\">{:.1}×</div><div class=\"d\">largest class / smallest</div></div></div>",
        au.mislabelled.len(),
        au.duplicates.len(),
        au.strays.len(),
        au.imbalance
    );

    let (train, val): (Vec<_>, Vec<_>) = au.mislabelled.iter().partition(|m| m.split == "train");
    for (id, what, list) in [("mislabelled", "training", train), ("mislabelled-val", "validation", val)] {
        section_head(
            &mut h,
            id,
            &format!("Likely mislabelled: {what} photos"),
            list.len(),
            "Out-of-fold probabilities of a linear head, ranked by confident learning. Each photo with its \
             nearest photos of its label and of the suggested class.",
        );
        h += "<div class=\"items\">";
        for m in list.iter().take(MAX_ITEMS) {
            let ev = |label: &str, near: &[crate::Neighbour]| {
                let pics: String = near.iter().map(|n| ctx.img(&n.path, "")).collect();
                format!("<div class=\"ev\"><span>nearest {}</span>{pics}</div>", escape(label))
            };
            let _ = write!(
                h,
                "<div class=\"item\">{}<div><code>{}</code></div><div>filed as <b>{}</b>, looks like <b>{}</b></div><div>score {:.2}</div>{}{}{}</div>",
                ctx.img(&m.path, "main"),
                ctx.shown(&m.path),
                escape(&m.label),
                escape(&m.suggested),
                m.score,
                ev(&m.label, &m.nearest_label),
                ev(&m.suggested, &m.nearest_suggested),
                ctx.choices(&m.path, &[Action::Move { to: m.suggested.clone() }, Action::SetAside])
            );
        }
        h += "</div></section>";
    }

    section_head(
        &mut h,
        "duplicates",
        "Near-duplicates",
        au.duplicates.len(),
        &format!(
            "Photos whose features have a cosine of at least {:.2}: resized, recompressed, cropped or \
             recoloured copies. A <span class=\"conflict\">conflict</span> is filed under two classes, a \
             <span class=\"leak\">leak</span> is in both training and validation.",
            au.settings.duplicate_threshold
        ),
    );
    h += "<div class=\"items\">";
    for d in au.duplicates.iter().take(MAX_ITEMS) {
        let kind = match d.kind {
            Kind::Copy => "copy",
            Kind::Conflict => "conflict",
            Kind::Leak => "leak",
        };
        let _ = write!(
            h,
            "<div class=\"item\"><div class=\"kind {kind}\">{kind} · similarity ≥ {:.3}</div><div class=\"group\">",
            d.similarity
        );
        for (i, p) in d.paths.iter().enumerate() {
            let _ = write!(
                h,
                "<div class=\"member\">{}<code>{}</code><div>{} · {}</div>{}</div>",
                ctx.img(p, ""),
                ctx.shown(p),
                escape(&d.labels[i]),
                escape(&d.splits[i]),
                ctx.choices(p, &[Action::SetAside])
            );
        }
        h += "</div></div>";
    }
    h += "</div></section>";

    section_head(
        &mut h,
        "strays",
        "Strays",
        au.strays.len(),
        &format!(
            "Photos far from every class: their open-set score (1 − cosine to the nearest photo of the other folds) \
             is above {:.3}, the third quartile plus 3 interquartile ranges of all photos' scores.",
            au.settings.stray_threshold
        ),
    );
    h += "<div class=\"items\">";
    for s in au.strays.iter().take(MAX_ITEMS) {
        let _ = write!(
            h,
            "<div class=\"item\">{}<div><code>{}</code></div><div>filed as <b>{}</b></div><div>score {:.3}</div>{}</div>",
            ctx.img(&s.path, "main"),
            ctx.shown(&s.path),
            escape(&s.label),
            s.score,
            ctx.choices(&s.path, &[Action::SetAside])
        );
    }
    h += "</div></section>";

    let most = au.classes.iter().map(|c| c.train + c.val).max().unwrap_or(1).max(1);
    let _ = write!(h, "<section id=\"classes\"><h2>Classes</h2><p class=\"note\">Imbalance {:.1}× (training photos of the largest class over the smallest); training weighs classes inversely to their size.</p><table><tr><th>class</th><th>train</th><th>val</th><th></th></tr>", au.imbalance);
    for c in &au.classes {
        let w = 240 * (c.train + c.val) / most;
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{w}px\"></span></td></tr>",
            escape(&c.name),
            c.train,
            c.val
        );
    }
    h += "</table></section>";

    section_head(
        &mut h,
        "tiny",
        "Tiny images",
        au.tiny.len(),
        &format!("Shorter side below {} pixels, half the backbone's input: enlarged more than twice, they are mostly blur to it.", au.settings.tiny_below),
    );
    h += "<div class=\"items\">";
    for t in au.tiny.iter().take(MAX_ITEMS) {
        let _ = write!(
            h,
            "<div class=\"item\">{}<div><code>{}</code></div><div>{}×{}</div>{}</div>",
            ctx.img(&t.path, "main"),
            ctx.shown(&t.path),
            t.width,
            t.height,
            ctx.choices(&t.path, &[Action::SetAside])
        );
    }
    h += "</div></section>";

    if let Some(next) = &au.next {
        let _ = write!(
            h,
            "<section id=\"next\"><h2>Label these next ({})</h2><p class=\"note\">Unlabelled photos the model is least sure of and \
             that are least like what is labelled, chosen one at a time so that they differ from each other.</p><div class=\"items\">",
            next.len()
        );
        for (i, s) in next.iter().enumerate() {
            let _ = write!(
                h,
                "<div class=\"item\">{}<div>{}. <code>{}</code></div><div>looks like <b>{}</b></div><div>uncertainty {:.2} · distance {:.2}</div></div>",
                ctx.img(&s.path, "main"),
                i + 1,
                escape(&s.path.display().to_string()),
                escape(&s.predicted),
                s.uncertainty,
                s.distance
            );
        }
        h += "</div></section>";
    }
    if !au.skipped.is_empty() {
        let _ = write!(h, "<section id=\"skipped\"><h2>Skipped files ({})</h2><ul>", au.skipped.len());
        for k in &au.skipped {
            let _ = write!(h, "<li><code>{}</code>: {}</li>", escape(&k.path.display().to_string()), escape(&k.reason));
        }
        h += "</ul></section>";
    }
    let json = serde_json::to_string(&data).unwrap_or_default().replace("</", "<\\/");
    let _ = write!(
        h,
        "<footer>retrain audit · {:.1}s</footer></main><script type=\"application/json\" id=\"audit-data\">{json}</script><script>{SCRIPT}</script></body></html>",
        au.seconds
    );
    h
}
