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
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
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
    let outputs: Vec<Value> = m
        .outputs
        .iter()
        .map(|(o, w)| json!({ "name": o, "datatype": "FP32", "shape": shape(o, -1, *w as i64) }))
        .collect();
    let mut body = json!({
        "name": m.name,
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{ "name": "image", "datatype": "UINT8", "shape": [-1, c, c, 3] }],
        "outputs": outputs,
    });
    // A several-labels model's outputs mean something else than a softmax's: say so.
    if let Some(ml) = &m.info.multi_label {
        body["parameters"] = json!({
            "task": "multi-label",
            "probabilities": "an independent sigmoid per class; a photo has every label whose probability reaches its threshold",
            "labels": "1 where the label applies, else 0",
            "class_names": m.info.class_names,
            "thresholds": ml.thresholds,
        });
    }
    Json(body).into_response()
}

/// An output's shape for `n` images of `width` values: `ood_score` has one value per image
/// and no second dimension, as in the graph.
fn shape(output: &str, n: i64, width: i64) -> Value {
    if output == retrain::open_set::OUTPUT {
        json!([n])
    } else {
        json!([n, width])
    }
}

#[derive(Deserialize)]
struct InferRequest {
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
    data: Flat,
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
pub(crate) const HEADER_LENGTH: &str = "inference-header-content-length";

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
        let m = app.model(&name)?;
        let header = headers.get(HEADER_LENGTH).map(|v| v.to_str().unwrap_or("?"));
        let Parsed { id, pixels, n, outputs, binary_output } = parse(header, &body, m.crop(), app.max_images)?;
        let wanted: Vec<(String, bool)> = match &outputs {
            Some(w) if !w.is_empty() => {
                for (o, _) in w {
                    if !m.outputs.iter().any(|(k, _)| k == o) {
                        let known: Vec<&str> = m.outputs.iter().map(|(k, _)| k.as_str()).collect();
                        return Err(ApiError::bad(format!("no output `{o}` (outputs: {})", known.join(", "))));
                    }
                }
                w.iter().map(|(o, b)| (o.clone(), b.unwrap_or(binary_output))).collect()
            }
            _ => m.outputs.iter().map(|(k, _)| (k.clone(), binary_output)).collect(),
        };
        let rows = app.run(m, pixels, n).await?;
        let mut tail = Vec::new();
        let outputs: Vec<Value> = wanted
            .iter()
            .map(|(o, binary)| {
                let data: Vec<f32> = rows.iter().flat_map(|r| r[o].iter().copied()).collect();
                let shape = shape(o, n as i64, (data.len() / n) as i64);
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
        if let Some(id) = id {
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

/// A v2 inference request, read and checked against the model's crop and `--max-images`.
#[derive(Debug)]
pub struct Parsed {
    pub id: Option<String>,
    /// `n` crops of crop×crop×3 bytes.
    pub pixels: Vec<u8>,
    pub n: usize,
    /// The outputs asked for, each with its own binary_data choice.
    pub outputs: Option<Vec<(String, Option<bool>)>>,
    /// `binary_data_output` for the whole request.
    pub binary_output: bool,
}

/// Reads a `/v2/.../infer` body: JSON, or JSON then binary tensors when `header` (the
/// `Inference-Header-Content-Length` value) is given. Every size is checked, with checked
/// arithmetic, against the bytes actually sent and `max_images` before anything is allocated
/// for the tensor; values are read straight into bytes.
pub fn parse(header: Option<&str>, body: &[u8], crop: usize, max_images: usize) -> Result<Parsed, ApiError> {
    let json_len = match header {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= body.len())
            .ok_or_else(|| ApiError::bad(format!("{HEADER_LENGTH} is not a length within the body")))?,
        None => body.len(),
    };
    let req: InferRequest = serde_json::from_slice(&body[..json_len])
        .map_err(|e| ApiError::bad(format!("the body is not a v2 inference request: {e}")))?;
    let binary = &body[json_len..];
    let c = crop;
    let [input] = req.inputs.as_slice() else {
        return Err(ApiError::bad(format!("expected one input, `image`; got {}", req.inputs.len())));
    };
    if input.name != "image" || input.datatype != "UINT8" {
        return Err(ApiError::bad(format!("the input is `image`, UINT8; got `{}`, {}", input.name, input.datatype)));
    }
    let n = match input.shape.as_slice() {
        &[n, h, w, 3] if n >= 1 && h == c as i64 && w == c as i64 => n,
        s => return Err(ApiError::bad(format!("`image` has shape [n, {c}, {c}, 3] with n ≥ 1; got {s:?}"))),
    };
    if n > max_images as i64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("`image` holds {n} images; at most {max_images} in one request (--max-images)"),
        ));
    }
    let n = n as usize;
    let needed = c.checked_mul(c).and_then(|p| p.checked_mul(3)).and_then(|p| p.checked_mul(n));
    let needed = needed.ok_or_else(|| ApiError::bad("`image` is too large"))?;
    let pixels = match input.parameters.binary_data_size {
        Some(size) if size != needed => {
            return Err(ApiError::bad(format!(
                "`image` of shape {:?} needs {needed} bytes; binary_data_size is {size}",
                input.shape
            )))
        }
        Some(size) if size != binary.len() => {
            return Err(ApiError::bad(format!("binary_data_size is {size}; {} bytes follow the JSON", binary.len())))
        }
        Some(_) if !input.data.0.is_empty() => {
            return Err(ApiError::bad("`image` has both data and binary_data_size"));
        }
        Some(_) => binary.to_vec(),
        None if !binary.is_empty() => {
            return Err(ApiError::bad(format!("{} bytes follow the JSON, but no binary_data_size", binary.len())))
        }
        None => req.inputs.into_iter().next().map(|i| i.data.0).unwrap_or_default(),
    };
    if pixels.len() != needed {
        return Err(ApiError::bad(format!(
            "`image` of shape [{n}, {c}, {c}, 3] needs {needed} values; got {}",
            pixels.len()
        )));
    }
    let outputs = req.outputs.map(|w| w.into_iter().map(|o| (o.name, o.parameters.binary_data)).collect());
    Ok(Parsed { id: req.id, pixels, n, outputs, binary_output: req.parameters.binary_data_output.unwrap_or(false) })
}

/// UINT8 tensor data, flat or nested row-major (both are allowed by the protocol), read
/// straight into bytes: a `serde_json::Value` would cost tens of bytes for each value sent.
#[derive(Default, Debug)]
struct Flat(Vec<u8>);

impl<'de> Deserialize<'de> for Flat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        Values(&mut out).deserialize(d)?;
        Ok(Flat(out))
    }
}

struct Values<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Values<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Values<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("UINT8 values: whole numbers 0..=255, flat or in nested arrays")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        match u8::try_from(v) {
            Ok(b) => {
                self.0.push(b);
                Ok(())
            }
            Err(_) => Err(E::custom(format!("UINT8 values are whole numbers 0..=255; got {v}"))),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("UINT8 values are whole numbers 0..=255; got {v}"))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        Err(E::custom(format!("UINT8 values are whole numbers 0..=255; got {v}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Values(self.0))?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(shape: &str, rest: &str) -> String {
        format!(r#"{{"inputs":[{{"name":"image","shape":{shape},"datatype":"UINT8"{rest}}}]}}"#)
    }

    #[test]
    fn a_huge_shape_is_refused_before_anything_is_allocated() {
        let body = image("[1000000000,224,224,3]", r#","data":[0]"#);
        let e = parse(None, body.as_bytes(), 224, 64).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", e.message);
        assert!(e.message.contains("1000000000 images") && e.message.contains("--max-images"), "{}", e.message);
        // Within the cap, the data sent must fill the shape.
        let e = parse(None, image("[2,4,4,3]", r#","data":[0]"#).as_bytes(), 4, 64).unwrap_err();
        assert!(e.message.contains("needs 96 values; got 1"), "{}", e.message);
        let binary = image("[3,4,4,3]", r#","parameters":{"binary_data_size":18446744073709551615}"#);
        let mut body = binary.clone().into_bytes();
        body.extend([7u8; 10]);
        let e = parse(Some(&binary.len().to_string()), &body, 4, 64).unwrap_err();
        assert!(e.message.contains("needs 144 bytes"), "{}", e.message);
        let e = parse(Some("99999999"), &body, 4, 64).unwrap_err();
        assert!(e.message.contains("not a length within the body"), "{}", e.message);
    }

    #[test]
    fn nested_and_flat_and_binary_tensors_read_the_same() {
        let flat: Vec<u8> = (0..48).collect();
        let nested =
            serde_json::json!([[flat[..24].chunks(3).collect::<Vec<_>>()], [flat[24..].chunks(3).collect::<Vec<_>>()]]);
        for data in [serde_json::json!(flat), nested] {
            let p = parse(None, image("[1,4,4,3]", &format!(r#","data":{data}"#)).as_bytes(), 4, 1).unwrap();
            assert_eq!((p.n, p.pixels.as_slice()), (1, flat.as_slice()));
        }
        let head = image("[1,4,4,3]", r#","parameters":{"binary_data_size":48}"#);
        let mut body = head.clone().into_bytes();
        body.extend(&flat);
        let p = parse(Some(&head.len().to_string()), &body, 4, 1).unwrap();
        assert_eq!(p.pixels, flat);
        let e = parse(None, image("[1,4,4,3]", r#","data":[1,-2]"#).as_bytes(), 4, 1).unwrap_err();
        assert!(e.message.contains("0..=255; got -2"), "{}", e.message);
    }
}
