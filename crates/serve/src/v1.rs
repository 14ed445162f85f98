//! retrain's own JSON: `POST /v1/predict` (one image's bytes, or several files as
//! multipart/form-data), `GET /v1/models`, and the page at `/`.

use crate::{ApiError, App, Model, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use retrain::predict::rank;
use serde::{Deserialize, Serialize};
use serde_json::json;

const PAGE: &str = include_str!("page.html");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn models(State(app): State<Shared>) -> Json<serde_json::Value> {
    let list: Vec<_> = app
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "backbone": m.info.backbone,
                "classes": m.info.class_names,
                "reject": m.threshold,
                // Several labels per photo: each class's threshold, in class order (else null).
                "thresholds": m.info.multi_label.as_ref().map(|ml| &ml.thresholds),
                "input": { "size": [m.crop(), m.crop()], "resize": m.info.preprocess.resize },
            })
        })
        .collect();
    Json(json!({ "models": list }))
}

#[derive(Deserialize)]
pub struct Top {
    top: Option<usize>,
}

#[derive(Serialize)]
struct FileResult {
    filename: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    predictions: Option<Vec<retrain::predict::Ranked>>,
    /// A several-labels model: the labels the graph's `labels` output gives, highest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<Vec<retrain::predict::Label>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    known: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ood_score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct ExplainQuery {
    class: Option<String>,
}

pub async fn explain_default(
    State(app): State<Shared>,
    q: Query<ExplainQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match only_model(&app) {
        Ok(name) => explain(app, name, q.0.class, body).await,
        Err(e) => e.into_response(),
    }
}

pub async fn explain_named(
    State(app): State<Shared>,
    Path(name): Path<String>,
    q: Query<ExplainQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    explain(app, name, q.0.class, body).await
}

/// Where in the photo the evidence for the class (default: the top one) is: the heatmap over the
/// crop the model saw, and that crop with the heatmap blended over it as a data: URI.
async fn explain(app: Shared, name: String, class: Option<String>, body: Result<Bytes, BytesRejection>) -> Response {
    let result: Result<serde_json::Value, ApiError> = async {
        let body = body.map_err(ApiError::rejected)?;
        app.model(&name)?;
        let index = app.models.iter().position(|m| m.name == name).expect("found above");
        let pixels = app.prepare(&app.models[index], body, "request body".into()).await?;
        let shared = app.clone();
        tokio::task::spawn_blocking(move || {
            let model = &shared.models[index];
            let mut slot = model.explainer.lock().map_err(|_| ApiError::unavailable("the explainer failed"))?;
            if slot.is_none() {
                let opened = retrain_explain::Explainer::open(&model.path, shared.threads, false)
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                *slot = Some(opened);
            }
            let ex = slot.as_mut().expect("opened above");
            let class = class.map(|c| ex.class_index(&c)).transpose().map_err(|e| ApiError::bad(e.to_string()))?;
            let e = ex
                .explain_crop(std::path::Path::new("request body"), pixels, class)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            Ok(json!({
                "model": model.name,
                "class": e.class,
                "method": e.method,
                "predictions": e.top,
                "heatmap": e.heatmap,
                "crop": e.crop,
                "overlay": retrain_explain::jpeg_uri(&retrain_explain::overlay(&e), 88),
            }))
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("explaining failed: {e}")))?
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The one model's name, or why `/v1/...` without a name does not say which.
fn only_model(app: &App) -> Result<String, ApiError> {
    if app.models.len() > 1 {
        let names: Vec<&str> = app.models.iter().map(|m| m.name.as_str()).collect();
        return Err(ApiError::bad(format!(
            "several models are served: use /v1/models/NAME/... (NAME: {})",
            names.join(", ")
        )));
    }
    Ok(app.models[0].name.clone())
}

pub async fn predict_default(State(app): State<Shared>, q: Query<Top>, req: Request) -> Response {
    match only_model(&app) {
        Ok(name) => predict(app, &name, q.top, req).await,
        Err(e) => e.into_response(),
    }
}

pub async fn predict_named(
    State(app): State<Shared>,
    Path(name): Path<String>,
    q: Query<Top>,
    req: Request,
) -> Response {
    predict(app, &name, q.top, req).await
}

async fn predict(app: Shared, name: &str, top: Option<usize>, req: Request) -> Response {
    match answer(&app, name, top, req).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(app: &App, name: &str, top: Option<usize>, req: Request) -> Result<serde_json::Value, ApiError> {
    let model = match app.model(name) {
        Ok(m) => m,
        Err(e) => {
            // Read the body first: answering while the client still sends it closes the
            // connection under it, and it sees a broken pipe instead of the 404.
            crate::drain(req.into_body(), app.max_body as u64).await;
            return Err(e);
        }
    };
    let k = top.unwrap_or(5).clamp(1, model.info.class_names.len());
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if multipart {
        let form = Multipart::from_request(req, &()).await.map_err(ApiError::rejected)?;
        return Ok(json!({ "model": model.name, "results": files(app, model, form, k).await? }));
    }
    let body = axum::body::Bytes::from_request(req, &()).await.map_err(ApiError::rejected)?;
    let pixels = app.prepare(model, body, "request body".into()).await?;
    let rows = app.run(model, pixels, 1).await?;
    let mut answer = json!({ "model": model.name, "predictions": ranked(model, &rows[0], k) });
    let (known, ood_score) = known(model, &rows[0]);
    if let Some(o) = ood_score {
        answer["ood_score"] = json!(o);
    }
    if let Some(k) = known {
        answer["known"] = json!(k);
    }
    if let Some(l) = labels(model, &rows[0]) {
        answer["labels"] = json!(l);
    }
    Ok(answer)
}

/// The next file of a form and its name, when `seen` files were read before it; more than
/// `max_images` is refused (413), after reading the rest of the form so that the client, still
/// sending, reads the answer rather than a broken pipe.
async fn next_file(form: &mut Multipart, seen: usize, max_images: usize) -> Result<Option<(String, Bytes)>, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
    let Some(mut field) = form.next_field().await.map_err(bad)? else { return Ok(None) };
    if seen == max_images {
        loop {
            while let Ok(Some(_)) = field.chunk().await {}
            match form.next_field().await {
                Ok(Some(f)) => field = f,
                _ => break,
            }
        }
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {max_images} files in one request (--max-images)"),
        ));
    }
    let filename = field.file_name().or(field.name()).unwrap_or("file").to_string();
    let bytes = field.bytes().await.map_err(bad)?;
    Ok(Some((filename, bytes)))
}

/// Reads a multipart/form-data body as `/v1/predict` does, to the files' names and sizes
/// (the request parser the fuzz target runs).
pub fn read_form(content_type: &str, body: &[u8], max_images: usize) -> Result<Vec<(String, usize)>, ApiError> {
    let req = axum::http::Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body.to_vec()))
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| ApiError::bad(e.to_string()))?;
    runtime.block_on(async {
        let mut form = Multipart::from_request(req, &()).await.map_err(ApiError::rejected)?;
        let mut files = Vec::new();
        while let Some((name, bytes)) = next_file(&mut form, files.len(), max_images).await? {
            files.push((name, bytes.len()));
        }
        Ok(files)
    })
}

/// Every file of the form, in order; one that cannot be decoded gets its error in its slot
/// and the others are still answered. Files are decoded as they arrive and run in batches of
/// at most `--max-batch`, so a request holds at most one batch of crops at a time.
async fn files(app: &App, model: &Model, mut form: Multipart, k: usize) -> Result<Vec<FileResult>, ApiError> {
    let mut results = Vec::new();
    let mut pending: Vec<(usize, Vec<u8>)> = Vec::new(); // (slot, pixels)
    while let Some((filename, bytes)) = next_file(&mut form, results.len(), app.max_images).await? {
        let slot = results.len();
        match app.prepare(model, bytes, filename.clone()).await {
            Ok(px) => {
                pending.push((slot, px));
                results.push(FileResult {
                    filename,
                    predictions: None,
                    labels: None,
                    known: None,
                    ood_score: None,
                    error: None,
                });
            }
            Err(e) => results.push(FileResult {
                filename,
                predictions: None,
                labels: None,
                known: None,
                ood_score: None,
                error: Some(e.message),
            }),
        }
        if pending.len() == app.max_batch {
            run_pending(app, model, &mut pending, &mut results, k).await?;
        }
    }
    if results.is_empty() {
        return Err(ApiError::bad("the form has no files"));
    }
    run_pending(app, model, &mut pending, &mut results, k).await?;
    Ok(results)
}

async fn run_pending(
    app: &App,
    model: &Model,
    pending: &mut Vec<(usize, Vec<u8>)>,
    results: &mut [FileResult],
    k: usize,
) -> Result<(), ApiError> {
    if pending.is_empty() {
        return Ok(());
    }
    let pixels: Vec<u8> = pending.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let rows = app.run(model, pixels, pending.len()).await?;
    for ((slot, _), row) in pending.drain(..).zip(rows) {
        let (known, ood_score) = known(model, &row);
        let r = &mut results[slot];
        (r.predictions, r.known, r.ood_score) = (Some(ranked(model, &row, k)), known, ood_score);
        r.labels = labels(model, &row);
    }
    Ok(())
}

/// Whether the photo is one of the classes (when the model rejects), and its `ood_score`.
fn known(model: &Model, row: &crate::batcher::Row) -> (Option<bool>, Option<f32>) {
    let score = row.get(retrain::open_set::OUTPUT).and_then(|v| v.first().copied());
    (retrain::open_set::OpenSet::verdict(score, model.threshold), score)
}

/// The labels the graph gave (its `labels` output), with their probabilities and thresholds.
fn labels(model: &Model, row: &crate::batcher::Row) -> Option<Vec<retrain::predict::Label>> {
    let on = row.get(retrain::LABELS_OUTPUT)?;
    let p = row.get("probabilities")?;
    let (_, all) = retrain::predict::labels(&model.info, p)?;
    let mut l: Vec<_> = all.into_iter().zip(on).filter(|(_, &on)| on > 0.5).map(|(l, _)| l).collect();
    l.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    Some(l)
}

fn ranked(model: &Model, row: &crate::batcher::Row, k: usize) -> Vec<retrain::predict::Ranked> {
    let p = row.get("probabilities").map(Vec::as_slice).unwrap_or(&[]);
    rank(p, &model.info.class_names, k)
}
