//! `retrain serve` on a loopback port, driven as a client would: answers equal `retrain
//! predict`'s and ONNX Runtime's on the same tensor, every bad request gets its status and a
//! JSON reason, 400 requests from 16 clients are all answered with memory flat, a full queue
//! answers 503, and SIGTERM lets what is in flight finish.

mod common;

use common::server::*;
use common::*;
use image::ImageEncoder;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn probabilities(predictions: &Value) -> Vec<(String, f64)> {
    predictions
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["class"].as_str().unwrap().to_string(), p["probability"].as_f64().unwrap()))
        .collect()
}

fn close(a: &[(String, f64)], b: &[(String, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && (x.1 - y.1).abs() < 1e-5)
}

fn model(t: &Path) -> PathBuf {
    let m = t.join("hym.onnx");
    succeeds(&mut train(t, &shared("data/hymenoptera"), &m, &[]));
    m
}

#[test]
fn answers_equal_predict_and_onnx_runtime_and_bad_requests_get_reasons() {
    let t = tempfile::tempdir().unwrap();
    let m = model(t.path());
    let photos = hymenoptera_val(3);
    let server = Server::start(t.path(), &[&m], &["--max-body", "3", "--max-pixels", "4000000"]);
    let u = &server.url;

    // retrain's JSON, one photo per request: what `retrain predict` says.
    let out = succeeds(retrain(t.path()).arg("predict").arg(&m).args(&photos).args(["--top", "2", "--format", "json"]));
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (photo, want) in photos.iter().zip(expected["predictions"].as_array().unwrap()) {
        let (status, got, _) = post(&format!("{u}/v1/predict?top=2"), "image/jpeg", &std::fs::read(photo).unwrap());
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["model"], "hym");
        assert!(close(&probabilities(&got["predictions"]), &probabilities(&want["top"])), "{got} vs {want}");
    }
    // Several files in one form, one of them not an image: that one gets its reason, the
    // others their answers.
    let a = std::fs::read(&photos[0]).unwrap();
    let b = std::fs::read(&photos[4]).unwrap();
    let (ct, body) = multipart(&[("a.jpg", &a), ("notes.txt", b"not a photo"), ("b.jpg", &b)]);
    let (status, got, _) = post(&format!("{u}/v1/models/hym/predict?top=2"), &ct, &body);
    assert_eq!(status, 200, "{got}");
    let r = got["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["filename"], "a.jpg");
    assert!(close(&probabilities(&r[0]["predictions"]), &probabilities(&expected["predictions"][0]["top"])));
    assert!(r[1]["error"].as_str().unwrap().contains("notes.txt: not an image"), "{}", r[1]);
    assert!(close(&probabilities(&r[2]["predictions"]), &probabilities(&expected["predictions"][4]["top"])));

    // Where it looked: the heatmap of the top class over the crop, and the picture of it.
    let (status, got, _) = post(&format!("{u}/v1/explain"), "image/jpeg", &a);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["class"], expected["predictions"][0]["top"][0]["class"]);
    assert_eq!(got["method"], "class activation map");
    assert_eq!(got["crop"]["size"], serde_json::json!([224, 224]));
    assert_eq!(got["heatmap"].as_array().unwrap().len(), 7);
    assert!(got["overlay"].as_str().unwrap().starts_with("data:image/jpeg;base64,/9j/"));
    let (status, got, _) = post(&format!("{u}/v1/models/hym/explain?class=bees"), "image/jpeg", &a);
    assert_eq!((status, got["class"].as_str()), (200, Some("bees")));

    // KServe v2: metadata, and infer on the prepared tensor equals ONNX Runtime on it.
    assert_eq!(get(&format!("{u}/v2/health/live")).0, 200);
    assert_eq!(get(&format!("{u}/v2/health/ready")).0, 200);
    let meta: Value = serde_json::from_str(&get(&format!("{u}/v2/models/hym")).1).unwrap();
    assert_eq!(
        meta["inputs"][0],
        serde_json::json!({"name": "image", "datatype": "UINT8", "shape": [-1, 224, 224, 3]})
    );
    let outputs: Vec<&str> = meta["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(outputs, ["probabilities", "ood_score", "logits", "features"]);
    let (bytes, info) = retrain::model::read(&m).unwrap();
    let mut pixels = Vec::new();
    for p in &photos[..2] {
        pixels.extend(retrain_pixels::load(p, info.geometry(), retrain::Limits::default()).unwrap());
    }
    let mut session = retrain_features::Session::new(&bytes, "test", 1).unwrap();
    let direct = session.run(pixels.clone(), 2, 224).unwrap();
    let request = serde_json::json!({
        "id": "q1",
        "inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 224, 224, 3], "data": pixels}],
        "outputs": [{"name": "logits"}, {"name": "probabilities"}],
    });
    let (status, got, _) =
        post(&format!("{u}/v2/models/hym/infer"), "application/json", request.to_string().as_bytes());
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], "q1");
    assert_eq!(got["model_name"], "hym");
    for (i, name) in ["logits", "probabilities"].iter().enumerate() {
        let out = &got["outputs"][i];
        assert_eq!(out["name"], *name);
        assert_eq!(out["shape"], serde_json::json!([2, 2]));
        let (_, _, want) = direct.iter().find(|(n, _, _)| n == name).unwrap();
        let data: Vec<f64> = out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(data.iter().zip(want).all(|(a, b)| (a - *b as f64).abs() < 1e-4), "{name}: {data:?} vs {want:?}");
    }

    // Bad requests: each its status and a reason that says what is wrong.
    let bad = |url: &str, ct: &str, body: &[u8], status: u16, says: &str| {
        let (s, v, _) = post(&format!("{u}{url}"), ct, body);
        assert_eq!(s, status, "{url}: {v}");
        let e = v["error"].as_str().unwrap_or_else(|| panic!("{url}: no JSON error: {v}"));
        assert!(e.contains(says), "{url}: {e:?} does not say {says:?}");
    };
    bad("/v1/predict", "image/jpeg", b"", 400, "empty");
    bad("/v1/predict", "image/jpeg", b"just some text", 400, "request body: not an image");
    // (A cut JPEG decodes what is there, as in `predict`; a cut PNG cannot.)
    let mut png = Vec::new();
    image::load_from_memory(&a)
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    bad("/v1/predict", "image/png", &png[..png.len() / 2], 400, "corrupt or truncated");
    // Over --max-body: refused from its Content-Length, before the body is read (so a client
    // that waits for the answer before sending, as here, gets it).
    let mut tcp = std::net::TcpStream::connect(u.trim_start_matches("http://")).unwrap();
    write!(tcp, "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 3200000\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 512];
    let n = tcp.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413") && head.contains("request body too large (--max-body)"), "{head}");
    let mut huge = Vec::new();
    image::codecs::png::PngEncoder::new(&mut huge)
        .write_image(&vec![0u8; 2100 * 2100], 2100, 2100, image::ExtendedColorType::L8)
        .unwrap();
    bad("/v1/predict", "image/png", &huge, 413, "image too large");
    bad("/v1/models/nope/predict", "image/jpeg", &a, 404, "no model `nope` (served: hym)");
    bad("/v1/explain?class=wasps", "image/jpeg", &a, 400, "wasps");
    bad("/v1/explain", "image/jpeg", b"just some text", 400, "not an image");
    bad("/v2/models/hym/infer", "application/json", b"{not json", 400, "not a v2 inference request");
    let wrong_shape = serde_json::json!({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 3, 3, 3], "data": vec![0u8; 27]}]});
    bad("/v2/models/hym/infer", "application/json", wrong_shape.to_string().as_bytes(), 400, "[n, 224, 224, 3]");
    let short = serde_json::json!({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": vec![0u8; 10]}]});
    bad("/v2/models/hym/infer", "application/json", short.to_string().as_bytes(), 400, "needs 150528 values; got 10");
    let range = serde_json::json!({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 224, 224, 3], "data": [[0, 300]]}]});
    bad("/v2/models/hym/infer", "application/json", range.to_string().as_bytes(), 400, "0..=255; got 300");
    let fp =
        serde_json::json!({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 224, 224, 3], "data": []}]});
    bad("/v2/models/hym/infer", "application/json", fp.to_string().as_bytes(), 400, "UINT8");
    assert_eq!(get(&format!("{u}/nowhere")).0, 404);

    // The page and the metrics.
    let (status, page) = get(&format!("{u}/"));
    assert!(status == 200 && page.contains("<input id=\"file\" type=\"file\""));
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
    let (_, metrics) = get(&format!("{u}/metrics"));
    assert!(metrics.contains("retrain_requests_total{route=\"/v1/predict\",status=\"200\"} 6"), "{metrics}");
    assert!(metrics.contains("retrain_requests_total{route=\"/v1/predict\",status=\"413\"} 2"), "{metrics}");
    assert!(metrics.contains("retrain_images_total{model=\"hym\"}"), "{metrics}");
    assert!(server.stop().success());
}

#[test]
fn sixteen_clients_are_all_answered_in_batches_with_memory_flat() {
    let t = tempfile::tempdir().unwrap();
    let m = model(t.path());
    let photos: Vec<Vec<u8>> = hymenoptera_val(8).iter().map(|p| std::fs::read(p).unwrap()).collect();
    let server = Server::start(t.path(), &[&m], &["--max-batch", "16"]);
    // One batch of the largest size first: ONNX Runtime's arena grows to it once, so what is
    // measured below is growth per request, not the arena reaching its size.
    let grey = serde_json::json!({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [16, 224, 224, 3], "data": vec![128u8; 16 * 224 * 224 * 3]}]});
    assert_eq!(
        post(&format!("{}/v2/models/hym/infer", server.url), "application/json", grey.to_string().as_bytes()).0,
        200
    );
    let url = format!("{}/v1/predict?top=1", server.url);
    let single: Vec<Value> = photos.iter().map(|p| post(&url, "image/jpeg", p).1["predictions"].clone()).collect();

    let round = || {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|c| {
                    let (url, photos, single) = (&url, &photos, &single);
                    s.spawn(move || {
                        for i in 0..25 {
                            let k = (c * 25 + i) % photos.len();
                            let (status, got, _) = post(url, "image/jpeg", &photos[k]);
                            assert_eq!(status, 200, "{got}");
                            assert!(close(&probabilities(&got["predictions"]), &probabilities(&single[k])));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        })
    };
    // The allocator's per-thread arenas settle over the first rounds (by how much differs from
    // machine to machine); a leak keeps growing after that, by ~60 MB a round for a lost decoded photo.
    let rss: Vec<u64> = (0..8)
        .map(|_| {
            round();
            server.rss_kb()
        })
        .collect();
    eprintln!("RSS after each round of 400 requests (kB): {rss:?}");
    assert!(rss[7] < rss[3] + 30_000, "memory grows under load: {rss:?} kB");

    let (_, metrics) = get(&format!("{}/metrics", server.url));
    let value = |name: &str| metric(&metrics, name);
    assert_eq!(value("retrain_requests_total{route=\"/v1/predict\",status=\"200\"}"), (photos.len() + 8 * 400) as f64);
    // Dynamic batching gathered concurrent requests: fewer batches than images.
    let (batches, images) =
        (value("retrain_batch_size_count{model=\"hym\"}"), value("retrain_batch_size_sum{model=\"hym\"}"));
    assert!(batches < images, "{batches} batches for {images} images");
    assert!(server.stop().success());
}

#[test]
fn a_full_queue_answers_503_and_sigterm_finishes_what_is_in_flight() {
    let t = tempfile::tempdir().unwrap();
    let m = model(t.path());
    let photo = std::fs::read(&hymenoptera_val(1)[0]).unwrap();

    // One request may wait while a batch runs: a burst of 16 finds the queue full.
    let server = Server::start(t.path(), &[&m], &["--max-queue", "1", "--max-batch", "1"]);
    let url = format!("{}/v1/predict", server.url);
    let answers: Vec<(u16, Value, Option<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16).map(|_| s.spawn(|| post(&url, "image/jpeg", &photo))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let full: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(!full.is_empty(), "no 503 from a queue of one: {:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
    assert!(answers.iter().all(|a| a.0 == 200 || a.0 == 503));
    assert_eq!(full[0].2.as_deref(), Some("1"), "503 without Retry-After");
    assert!(full[0].1["error"].as_str().unwrap().contains("queue is full"));
    assert!(server.stop().success());

    // A request not answered within --timeout gets 408 and a reason.
    let server = Server::start(t.path(), &[&m], &["--timeout", "1", "--batch-wait-ms", "3000"]);
    let (status, got, _) = post(&format!("{}/v1/predict", server.url), "image/jpeg", &photo);
    assert_eq!(status, 408, "{got}");
    assert!(got["error"].as_str().unwrap().contains("--timeout"));
    drop(server);

    // Requests waiting for their batch when SIGTERM comes are still answered; then it exits 0.
    let server = Server::start(t.path(), &[&m], &["--batch-wait-ms", "1500"]);
    let url = format!("{}/v1/predict", server.url);
    let (url, photo) = (&url, &photo);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(move || post(url, "image/jpeg", photo).0)).collect();
        std::thread::sleep(Duration::from_millis(500));
        let status = server.stop();
        assert!(status.success(), "{status:?}");
        for h in hs {
            assert_eq!(h.join().unwrap(), 200);
        }
    });
    assert!(ureq::get(&format!("{}/healthz", url.trim_end_matches("/v1/predict"))).call().is_err());
}

#[test]
fn the_page_classifies_picked_photos_in_chromium() {
    let Some(chromium) = playwright() else { return };
    let t = tempfile::tempdir().unwrap();
    let m = model(t.path());
    let mut photos = hymenoptera_val(2);
    // A daisy: none of the classes.
    let daisy = std::fs::read_dir(shared("data/flowers/daisy")).unwrap().next().unwrap().unwrap().path();
    photos.push(daisy);
    let not_a_photo = t.path().join("notes.txt");
    std::fs::write(&not_a_photo, "not a photo").unwrap();
    let out = succeeds(retrain(t.path()).arg("predict").arg(&m).args(&photos).args(["--top", "1", "--format", "json"]));
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();

    let server = Server::start(t.path(), &[&m], &[]);
    let shot = t.path().join("page.png");
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/serve_page.cjs"))
            .arg(&chromium)
            .arg(&server.url)
            .arg(&shot)
            .args(&photos)
            .arg(&not_a_photo),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cards = seen["cards"].as_array().unwrap();
    assert_eq!(cards.len(), photos.len() + 2);
    // A frame of Chromium's synthetic camera, classified like a photo.
    let camera = cards.iter().find(|c| c["name"].as_str().unwrap().starts_with("camera ")).unwrap();
    assert!(camera["top"] == "ants" || camera["top"] == "bees", "{camera}");
    assert_eq!(camera["imageLoaded"], true);
    for (p, want) in photos.iter().zip(expected["predictions"].as_array().unwrap()) {
        let name = p.file_name().unwrap().to_str().unwrap();
        let card = cards.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no card for {name}: {seen}"));
        let note = format!(
            "Bright: where it sees \"{}\" (class activation map), on the crop the model saw.",
            want["top"][0]["class"].as_str().unwrap()
        );
        assert_eq!(card["seen"], note.as_str());
        assert_eq!(card["top"], want["top"][0]["class"], "{name}");
        let shown = format!("{:.1}%", 100.0 * want["top"][0]["probability"].as_f64().unwrap());
        assert_eq!(card["shown"], shown.as_str(), "{name}");
        assert_eq!(card["imageLoaded"], true, "{name}");
        assert_eq!(card["heatmap"], 224, "{name}: the heatmap over the 224×224 crop");
        // One label a photo: no labels line, no threshold marks.
        assert!(
            card["labels"].is_null() && card["rows"].as_array().unwrap().iter().all(|r| r["mark"].is_null()),
            "{card}"
        );
        // Rejected as predict rejects it, saying which classes it is not.
        let unknown = if want["known"] == false { Value::from("Not one of: ants, bees") } else { Value::Null };
        assert_eq!(card["unknown"], unknown, "{name}");
    }
    assert!(cards.iter().any(|c| c["unknown"] == "Not one of: ants, bees"), "the daisy: {seen}");
    let bad = cards.iter().find(|c| c["name"] == "notes.txt").unwrap();
    assert_eq!(bad["error"], "notes.txt: not an image (unrecognised format)");
    // The only problem the browser saw is that refused file's 400.
    let problems: Vec<&str> = seen["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(problems.iter().all(|p| p.contains("status of 400")) && problems.len() == 1, "{problems:?}");
    let img = image::open(&shot).unwrap().to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 5_000, "the page shows no photos: {} colours", colours.len());
    assert!(server.stop().success());
}

#[test]
fn the_triton_export_parses_with_tritons_schema_and_tritons_client_talks_to_serve() {
    let Some(python) = deploy_python("tritonclient.grpc") else { return };
    let t = tempfile::tempdir().unwrap();
    // A name KServe would refuse as is: the service name is made a DNS label.
    let m = t.path().join("Hym_Ants.onnx");
    succeeds(&mut train(t.path(), &shared("data/hymenoptera"), &m, &[]));
    let repo = t.path().join("repo");
    succeeds(
        retrain(t.path()).args(["export", "triton"]).arg(&m).arg(&repo).args(["--storage-uri", "s3://bucket/models/"]),
    );
    let dir = repo.join("Hym_Ants");
    assert_eq!(
        std::fs::read(dir.join("1/model.onnx")).unwrap(),
        std::fs::read(&m).unwrap(),
        "the model file is copied unchanged"
    );
    assert_eq!(std::fs::read_to_string(dir.join("labels.txt")).unwrap(), "ants\nbees\n");

    let server = Server::start(t.path(), &[&m], &[]);
    let out = succeeds(
        std::process::Command::new(python)
            .arg(root().join("tests/python/triton_check.py"))
            .arg(dir.join("config.pbtxt"))
            .arg(repo.join("Hym_Ants.inferenceservice.yaml"))
            .arg(server.url.trim_start_matches("http://"))
            .args(["Hym_Ants", "2"]),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Triton's ModelConfig, as Triton reads it.
    let c = &seen["config"];
    assert_eq!(c["name"], "Hym_Ants");
    assert_eq!(c["platform"], "onnxruntime_onnx");
    assert_eq!(c["max_batch_size"], 32);
    assert_eq!(
        c["input"],
        serde_json::json!([{"name": "image", "data_type": "TYPE_UINT8", "dims": ["224", "224", "3"]}])
    );
    assert_eq!(c["dynamic_batching"]["max_queue_delay_microseconds"], "2000");
    let outputs = c["output"].as_array().unwrap();
    let probabilities = outputs.iter().find(|o| o["name"] == "probabilities").unwrap();
    assert_eq!(probabilities["label_filename"], "labels.txt");
    // The outputs Triton would serve are those `retrain serve` describes.
    let meta = seen["metadata"]["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), meta.len());
    for o in outputs {
        let served = meta.iter().find(|s| s["name"] == o["name"]).unwrap();
        assert_eq!(o["data_type"], "TYPE_FP32");
        let dims: Vec<i64> =
            o["dims"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().parse().unwrap()).collect();
        // One value per image (`ood_score`): [1] in Triton's config, reshaped to nothing.
        let shape = if o.get("reshape").is_some() { serde_json::json!([-1]) } else { serde_json::json!([-1, dims[0]]) };
        assert_eq!(served["shape"], shape, "{o}");
    }

    // The KServe InferenceService.
    let s = &seen["service"];
    assert_eq!(s["apiVersion"], "serving.kserve.io/v1beta1");
    assert_eq!(s["kind"], "InferenceService");
    assert_eq!(s["metadata"]["name"], "hym-ants");
    let model = &s["spec"]["predictor"]["model"];
    assert_eq!(model["modelFormat"]["name"], "triton");
    assert_eq!(model["protocolVersion"], "v2");
    assert_eq!(model["storageUri"], "s3://bucket/models");

    // Triton's HTTP client against `retrain serve`: the answers, JSON or binary, are ONNX
    // Runtime's on the same tensor.
    assert_eq!(seen["live"], true);
    assert_eq!(seen["ready"], true);
    let pixels: Vec<u8> = (0..2 * 224 * 224 * 3).map(|i: usize| (i * 7 % 256) as u8).collect();
    let (bytes, _) = retrain::model::read(&m).unwrap();
    let direct = retrain_features::Session::new(&bytes, "test", 1).unwrap().run(pixels, 2, 224).unwrap();
    for mode in ["json", "binary"] {
        for (name, _, want) in &direct {
            let got: Vec<f64> = seen["answers"][mode][name]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| match row.as_array() {
                    Some(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
                    None => vec![row.as_f64().unwrap()],
                })
                .collect();
            assert_eq!(got.len(), want.len(), "{mode} {name}");
            assert!(got.iter().zip(want).all(|(a, b)| (a - *b as f64).abs() < 1e-4), "{mode} {name}");
        }
    }
    assert!(server.stop().success());
}

#[test]
fn every_interface_is_served_only_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let m = model(t.path());
    let (mut child, line) = Server::spawn(t.path(), &[&m], &["--host", "0.0.0.0"]);
    assert!(line.starts_with("listening on http://0.0.0.0:"), "{line}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        err.contains(
            "warning: listening on every network interface without --token: anyone who can reach this machine"
        ),
        "{err}"
    );
}
