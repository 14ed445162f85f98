//! The KServe v2 / Triton HTTP protocol (the "Open Inference Protocol"): health, server and
//! model metadata, and `infer` on JSON tensors. The model's input is what Triton would be fed
//! with the same `.onnx`: `image`, UINT8 `[n, H, W, 3]`, already resized and cropped.

use crate::{ApiError, Shared};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
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
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
struct Input {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
struct Wanted {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// The binary tensor extension's parameters (Triton's clients use it by default).
#[derive(Deserialize, Default)]
struct Parameters {
    binary_data_size: Option<usize>,
    binary_data: Option<bool>,
    binary_data_output: Option<bool>,
}

/// The header that says how much of the body is JSON, the rest being binary tensors.
const HEADER_LENGTH: &str = "inference-header-content-length";

pub async fn infer_version(
    State(app): State<Shared>,
    Path((name, _version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    infer(State(app), Path(name), headers, body).await
}

/// `POST /v2/models/NAME/infer`: JSON tensors, or the binary tensor extension; any content type,
/// as Triton's own clients send none.
pub async fn infer(
    State(app): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let body = body.map_err(ApiError::rejected)?;
        let json_len = match headers.get(HEADER_LENGTH) {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n <= body.len())
                .ok_or_else(|| ApiError::bad(format!("{HEADER_LENGTH} is not a length within the body")))?,
            None => body.len(),
        };
        let req: InferRequest = serde_json::from_slice(&body[..json_len])
            .map_err(|e| ApiError::bad(format!("the body is not a v2 inference request: {e}")))?;
        // The one input's bytes, when sent binary.
        let binary = &body[json_len..];
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
        match input.parameters.binary_data_size {
            Some(size) if size <= binary.len() => pixels.extend_from_slice(&binary[..size]),
            Some(size) => {
                return Err(ApiError::bad(format!(
                    "binary_data_size {size} is more than the {} bytes sent",
                    binary.len()
                )))
            }
            None => flatten(&input.data, &mut pixels)?,
        }
        if pixels.len() != n * c * c * 3 {
            return Err(ApiError::bad(format!(
                "`image` of shape {:?} needs {} values; got {}",
                input.shape,
                n * c * c * 3,
                pixels.len()
            )));
        }
        let all_binary = req.parameters.binary_data_output.unwrap_or(false);
        let wanted: Vec<(String, bool)> = match &req.outputs {
            Some(w) if !w.is_empty() => {
                for o in w {
                    if !m.outputs.iter().any(|(k, _)| *k == o.name) {
                        let known: Vec<&str> = m.outputs.iter().map(|(k, _)| k.as_str()).collect();
                        return Err(ApiError::bad(format!("no output `{}` (outputs: {})", o.name, known.join(", "))));
                    }
                }
                w.iter().map(|o| (o.name.clone(), o.parameters.binary_data.unwrap_or(all_binary))).collect()
            }
            _ => m.outputs.iter().map(|(k, _)| (k.clone(), all_binary)).collect(),
        };
        let rows = app.run(m, pixels, n).await?;
        let mut tail = Vec::new();
        let outputs: Vec<Value> = wanted
            .iter()
            .map(|(o, binary)| {
                let data: Vec<f32> = rows.iter().flat_map(|r| r[o].iter().copied()).collect();
                let shape = json!([n, data.len() / n]);
                if *binary {
                    let before = tail.len();
                    tail.extend(data.iter().flat_map(|v| v.to_le_bytes()));
                    let size = tail.len() - before;
                    json!({ "name": o, "datatype": "FP32", "shape": shape, "parameters": { "binary_data_size": size } })
                } else {
                    json!({ "name": o, "datatype": "FP32", "shape": shape, "data": data })
                }
            })
            .collect();
        let mut answer = json!({ "model_name": m.name, "model_version": "1", "outputs": outputs });
        if let Some(id) = req.id {
            answer["id"] = json!(id);
        }
        if tail.is_empty() {
            return Ok(Json(answer).into_response());
        }
        let mut body = serde_json::to_vec(&answer).unwrap_or_default();
        let json_len = body.len();
        body.extend(tail);
        Ok((
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (HeaderName::from_static(HEADER_LENGTH), json_len.to_string()),
            ],
            body,
        )
            .into_response())
    }
    .await;
    match result {
        Ok(r) => r,
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
