//! The KServe v2 / Triton HTTP protocol (the "Open Inference Protocol"): health, server and
//! model metadata, and `infer` on JSON tensors. The model's input is what Triton would be fed
//! with the same `.onnx`: `image`, UINT8 `[n, H, W, 3]`, already resized and cropped.

use crate::{ApiError, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub async fn server() -> Json<Value> {
    Json(json!({ "name": "retrain", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

pub async fn ready(State(app): State<Shared>) -> StatusCode {
    if app.stopping.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

pub async fn model_ready(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    match app.model(&name) {
        Ok(_) => ready(State(app)).await.into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn metadata(State(app): State<Shared>, Path(name): Path<String>) -> Response {
    let m = match app.model(&name) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let c = m.crop();
    let outputs: Vec<Value> =
        m.outputs.iter().map(|(o, w)| json!({ "name": o, "datatype": "FP32", "shape": [-1, w] })).collect();
    Json(json!({
        "name": m.name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{ "name": "image", "datatype": "UINT8", "shape": [-1, c, c, 3] }],
        "outputs": outputs,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct InferRequest {
    id: Option<String>,
    inputs: Vec<Input>,
    outputs: Option<Vec<Wanted>>,
}

#[derive(Deserialize)]
struct Input {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    data: Value,
}

#[derive(Deserialize)]
struct Wanted {
    name: String,
}

pub async fn infer_version(
    State(app): State<Shared>,
    Path((name, _version)): Path<(String, String)>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    infer(State(app), Path(name), body).await
}

pub async fn infer(
    State(app): State<Shared>,
    Path(name): Path<String>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let Json(req) = body.map_err(|r| {
            let status = r.status();
            ApiError::new(status, format!("the body is not a v2 inference request: {}", r.body_text()))
        })?;
        let m = app.model(&name)?;
        let c = m.crop();
        let [input] = req.inputs.as_slice() else {
            return Err(ApiError::bad(format!("expected one input, `image`; got {}", req.inputs.len())));
        };
        if input.name != "image" || input.datatype != "UINT8" {
            return Err(ApiError::bad(format!(
                "the input is `image`, UINT8; got `{}`, {}",
                input.name, input.datatype
            )));
        }
        let n = match input.shape.as_slice() {
            &[n, h, w, 3] if n >= 1 && h == c as i64 && w == c as i64 => n as usize,
            s => return Err(ApiError::bad(format!("`image` has shape [n, {c}, {c}, 3] with n ≥ 1; got {s:?}"))),
        };
        let mut pixels = Vec::with_capacity(n * c * c * 3);
        flatten(&input.data, &mut pixels)?;
        if pixels.len() != n * c * c * 3 {
            return Err(ApiError::bad(format!(
                "`image` of shape {:?} needs {} values; got {}",
                input.shape,
                n * c * c * 3,
                pixels.len()
            )));
        }
        let wanted: Vec<String> = match &req.outputs {
            Some(w) if !w.is_empty() => {
                for o in w {
                    if !m.outputs.iter().any(|(k, _)| *k == o.name) {
                        let known: Vec<&str> = m.outputs.iter().map(|(k, _)| k.as_str()).collect();
                        return Err(ApiError::bad(format!("no output `{}` (outputs: {})", o.name, known.join(", "))));
                    }
                }
                w.iter().map(|o| o.name.clone()).collect()
            }
            _ => m.outputs.iter().map(|(k, _)| k.clone()).collect(),
        };
        let rows = app.run(m, pixels, n).await?;
        let outputs: Vec<Value> = wanted
            .iter()
            .map(|o| {
                let data: Vec<f32> = rows.iter().flat_map(|r| r[o].iter().copied()).collect();
                json!({ "name": o, "datatype": "FP32", "shape": [n, data.len() / n], "data": data })
            })
            .collect();
        let mut answer = json!({ "model_name": m.name, "model_version": "1", "outputs": outputs });
        if let Some(id) = req.id {
            answer["id"] = json!(id);
        }
        Ok(Json(answer))
    }
    .await;
    match result {
        Ok(j) => j.into_response(),
        Err(e) => e.into_response(),
    }
}

/// The tensor's values, flat or nested row-major (both are allowed by the protocol), as bytes.
fn flatten(v: &Value, out: &mut Vec<u8>) -> Result<(), ApiError> {
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        Value::Number(n) => match n.as_u64() {
            Some(b) if b <= 255 => {
                out.push(b as u8);
                Ok(())
            }
            _ => Err(ApiError::bad(format!("UINT8 values are whole numbers 0..=255; got {n}"))),
        },
        other => Err(ApiError::bad(format!("UINT8 values are numbers; got {other}"))),
    }
}
