//! `retrain export web` and `retrain serve --static`: the exported page in headless Chromium
//! answers as `retrain predict` does (photos through the file input, a camera frame, a file
//! that is not a photo), works with the server gone (its service worker), and the export
//! refuses folders and runtimes that are not its own, fetching ONNX Runtime Web once from a
//! (loopback) npm registry into the cache.

mod common;

use common::server::*;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn export(home: &Path, model: &Path, dir: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = retrain(home);
    c.args(["export", "web"]).arg(model).arg(dir).args(extra);
    c
}

/// Every file of an exported folder and its bytes, by relative path.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = walk_all(dir)
        .into_iter()
        .map(|p| (p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn the_exported_page_answers_as_predict_does_in_chromium_and_offline() {
    let Some(chromium) = playwright() else { return };
    let Some((ort_dir, _)) = ort_web() else { return };
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("hym.onnx");
    succeeds(&mut train(t.path(), &shared("data/hymenoptera"), &m, &[]));
    let site = t.path().join("site");
    let out = succeeds(export(t.path(), &m, &site, &["--title", "Ants & <bees>", "--ort-web"]).arg(&ort_dir));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("retrain serve --static"), "{said}");
    // The title is text, not markup, in the page and in the manifest.
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("<h1>Ants &amp; &lt;bees&gt;</h1>"), "{index}");
    assert_eq!(read_json(&site.join("manifest.webmanifest"))["name"], "Ants & <bees>");
    // The model file is the user's, byte for byte.
    assert_eq!(std::fs::read(site.join("model.onnx")).unwrap(), std::fs::read(&m).unwrap());

    let photos = hymenoptera_val(10);
    let out = succeeds(retrain(t.path()).arg("predict").arg(&m).args(&photos).args(["--top", "2", "--format", "json"]));
    let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
    let threshold = read_json(&site.join("model.json"))["threshold"].as_f64().unwrap();
    let not_a_photo = t.path().join("notes.txt");
    std::fs::write(&not_a_photo, "not a photo").unwrap();

    let mut cmd = retrain(t.path());
    cmd.args(["serve", "--static"]).arg(&site).args(["--port", "0"]);
    let server = Server::started(Server::spawn_command(cmd));
    let shot = t.path().join("page.png");
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/web_page.cjs"))
            .arg(&chromium)
            .arg(&server.url)
            .arg(&shot)
            .arg(server.child.id().to_string())
            .args(&photos)
            .arg(&not_a_photo),
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["problems"], Value::Array(vec![]), "the browser reported problems");
    assert_eq!(seen["first"]["ready"], "1", "{}", seen["first"]);
    assert_eq!(seen["first"]["isolated"], true, "served with COOP/COEP, the page is cross-origin isolated");
    assert!(seen["first"]["status"].as_str().unwrap().starts_with("2 classes: ants, bees · WebAssembly"));

    let cards = seen["picked"].as_array().unwrap();
    assert_eq!(cards.len(), photos.len() + 1);
    let mut largest = 0f64;
    for (p, want) in photos.iter().zip(expected["predictions"].as_array().unwrap()) {
        let name = p.file_name().unwrap().to_str().unwrap();
        let card = cards.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no card for {name}: {seen}"));
        assert_eq!(card["done"], "1", "{card}");
        assert_eq!(card["imageLoaded"], true, "{name}");
        // One label a photo: no labels line, no threshold marks.
        assert!(
            card["labels"].is_null() && card["marks"].as_array().unwrap().iter().all(|m| m["at"].is_null()),
            "{card}"
        );
        let top = card["top"].as_array().unwrap();
        assert_eq!(top[0]["class"], want["top"][0]["class"], "{name}: {card}");
        for w in want["top"].as_array().unwrap() {
            let got = top.iter().find(|g| g["class"] == w["class"]).unwrap();
            let (g, w) = (got["probability"].as_f64().unwrap(), w["probability"].as_f64().unwrap());
            largest = largest.max((g - w).abs());
            assert_eq!(got["shown"], format!("{:.1}%", 100.0 * g).as_str());
        }
        let (ood, want_ood) = (card["ood_score"].as_f64().unwrap(), want["ood_score"].as_f64().unwrap());
        assert!((ood - want_ood).abs() < 0.01, "{name}: ood_score {ood} in the browser, {want_ood} in predict");
        // "Unknown" as predict says it, but for a photo on the threshold itself.
        if (want_ood - threshold).abs() > 0.01 {
            let unknown = if want["known"] == false { Value::from("Not one of: ants, bees") } else { Value::Null };
            assert_eq!(card["unknown"], unknown, "{name}");
        }
    }
    assert!(largest <= 0.02, "a probability differs by {largest} from retrain predict's");
    let bad = cards.iter().find(|c| c["name"] == "notes.txt").unwrap();
    assert_eq!(bad["error"], "notes.txt: not an image (the browser cannot decode it)");

    // Its limits, each with a reason, and the page still answering after them.
    assert_eq!(seen["limits"]["pixels"], "the image: 20×10 is more than 100 pixels");
    assert_eq!(seen["limits"]["strip"], "the image: 1×70000 is too elongated to resize");
    assert_eq!(seen["limits"]["after"], "classified");

    // Chromium's synthetic camera: classified live, and one frame kept.
    assert!(seen["live"] == "ants" || seen["live"] == "bees", "{}", seen["live"]);
    let camera = &seen["camera"];
    assert_eq!(camera["done"], "1", "{camera}");
    assert_eq!(camera["imageLoaded"], true);
    assert_eq!(camera["top"].as_array().unwrap().len(), 2);

    // With the server gone the service worker serves the page, and it still classifies.
    let offline = &seen["offline"];
    assert_eq!(offline["serverReachable"], false);
    assert_eq!(offline["ready"], "1", "{offline}");
    let again = &offline["cards"][0];
    let first = cards.iter().find(|c| c["name"] == photos[0].file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!(again["top"], first["top"], "offline answers differ");

    let img = image::open(&shot).unwrap().to_rgb8();
    let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(colours.len() > 5_000, "the page shows no photos: {} colours", colours.len());

    // An int8 model, served by the documented one-liner, a server that sets no headers: one
    // thread on the first visit; from the service worker's copy the page is cross-origin
    // isolated, so threads as well.
    let m8 = t.path().join("hym-int8.onnx");
    succeeds(&mut train(t.path(), &shared("data/hymenoptera"), &m8, &["--precision", "int8"]));
    let site8 = t.path().join("site-int8");
    succeeds(export(t.path(), &m8, &site8, &["-q", "--ort-web"]).arg(&ort_dir));
    let out = succeeds(retrain(t.path()).arg("predict").arg(&m8).arg(&photos[0]).args(["--format", "json"]));
    let want8: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut plain = std::process::Command::new("python3")
        .args(["-m", "http.server", "0", "--bind", "127.0.0.1"])
        .current_dir(&site8)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(plain.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.split("port ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("{line}"));
    let out = succeeds(
        std::process::Command::new("node")
            .arg(root().join("tests/browser/web_page.cjs"))
            .arg(&chromium)
            .arg(format!("http://127.0.0.1:{port}/"))
            .arg(t.path().join("plain.png"))
            .arg(plain.id().to_string())
            .arg(&photos[0]),
    );
    let _ = plain.wait();
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["problems"], Value::Array(vec![]));
    assert_eq!(seen["first"]["isolated"], false);
    assert!(seen["first"]["status"].as_str().unwrap().ends_with("WebAssembly, 1 thread"), "{}", seen["first"]);
    assert_eq!(seen["offline"]["isolated"], true, "{}", seen["offline"]);
    let int8 = &seen["picked"][0];
    assert_eq!(int8["top"][0]["class"], want8["predictions"][0]["top"][0]["class"], "{int8}");
    assert_eq!(seen["offline"]["cards"][0]["top"], int8["top"]);
}

/// A loopback npm registry serving one tarball; counts the requests for it.
struct Registry {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn registry(tarball: Vec<u8>) -> Registry {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            while reader.read_line(&mut String::new()).map(|n| n > 2).unwrap_or(false) {}
            if line.starts_with("GET /onnxruntime-web/-/onnxruntime-web-1.31.1.tgz ") {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", tarball.len());
                let _ = s.write_all(&tarball);
            } else {
                let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    Registry { url, hits }
}

#[test]
fn export_refuses_what_is_not_its_own_and_gets_onnxruntime_web_once() {
    let Some((ort_dir, tgz)) = ort_web() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = flowers_mini(&t.path().join("data"), 6);
    let m = t.path().join("mini.onnx");
    succeeds(&mut train(t.path(), &data, &m, &["--val-fraction", "0.34"]));

    // From the (loopback) registry into the cache once; the second export uses the cache.
    let reg = registry(std::fs::read(&tgz).unwrap());
    let fetched = t.path().join("fetched");
    succeeds(export(t.path(), &m, &fetched, &["-q"]).env("npm_config_registry", &reg.url));
    assert_eq!(reg.hits.load(Ordering::SeqCst), 1);
    assert!(t.path().join("retrain/ort-web/onnxruntime-web-1.31.1.tgz").is_file());
    let local = t.path().join("local");
    succeeds(export(t.path(), &m, &local, &["-q", "--ort-web"]).arg(&ort_dir));
    assert_eq!(contents(&fetched), contents(&local), "the registry's and the local copy's pages differ");
    // Into an earlier export again (its own files replaced, a file of the user's kept).
    std::fs::write(fetched.join("CNAME"), "example.org").unwrap();
    succeeds(export(t.path(), &m, &fetched, &["-q"]).env("npm_config_registry", &reg.url));
    assert_eq!(reg.hits.load(Ordering::SeqCst), 1, "downloaded again although cached");
    assert_eq!(std::fs::read_to_string(fetched.join("CNAME")).unwrap(), "example.org");
    let names: Vec<String> = contents(&local).iter().map(|(p, _)| p.display().to_string()).collect();
    for want in [
        "index.html",
        "retrain.js",
        "app.js",
        "sw.js",
        "manifest.webmanifest",
        "model.json",
        "model.onnx",
        "preprocess.onnx",
        "ort/ort-wasm-simd-threaded.wasm",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    // The service worker caches every file it is given, under a name that follows their contents.
    let sw = std::fs::read_to_string(local.join("sw.js")).unwrap();
    for n in &names {
        assert!(n == "sw.js" || sw.contains(&format!("\"./{n}\"")), "sw.js does not cache {n}");
    }
    assert!(!sw.contains("{{"), "{sw}");

    // A tarball that is not the pinned one: refused, nothing cached, nothing written.
    let mut bad = std::fs::read(&tgz).unwrap();
    let last = bad.len() - 100;
    bad[last] ^= 1;
    let reg = registry(bad);
    let home = t.path().join("other-cache");
    let dir = t.path().join("never");
    fails(export(&home, &m, &dir, &[]).env("npm_config_registry", &reg.url), "sha256");
    assert!(!dir.exists());
    assert!(!home.exists() || walk_all(&home).is_empty(), "{:?}", walk_all(&home));
    // No registry at all: what to do offline.
    let e = fails(export(&home, &m, &dir, &[]).env("npm_config_registry", "http://127.0.0.1:9"), "--ort-web");
    assert!(e.contains("127.0.0.1:9/onnxruntime-web/-/onnxruntime-web-1.31.1.tgz"), "{e}");

    // A local copy of another version (one byte changed) is named and refused.
    let other = t.path().join("other-ort");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"] {
        std::fs::copy(ort_dir.join("package/dist").join(f), other.join(f)).unwrap();
    }
    let mut mjs = std::fs::read(other.join("ort-wasm-simd-threaded.mjs")).unwrap();
    mjs.push(b'\n');
    std::fs::write(other.join("ort-wasm-simd-threaded.mjs"), mjs).unwrap();
    let e = fails(export(t.path(), &m, &dir, &["--ort-web"]).arg(&other), "ort-wasm-simd-threaded.mjs");
    assert!(e.contains("not the file of onnxruntime-web 1.31.1"), "{e}");
    fails(export(t.path(), &m, &dir, &["--ort-web"]).arg(t.path().join("data")), "holds no ort.wasm.min.js");
    assert!(!dir.exists());

    // A folder of the user's is not written into; nor a file; nor a title with a line break.
    let theirs = t.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("notes.md"), "mine").unwrap();
    fails(export(t.path(), &m, &theirs, &["--ort-web"]).arg(&ort_dir), "did not write (notes.md)");
    assert_eq!(walk_all(&theirs), vec![theirs.join("notes.md")]);
    fails(export(t.path(), &m, &theirs.join("notes.md"), &["--ort-web"]).arg(&ort_dir), "not a folder");
    fails(export(t.path(), &m, &dir, &["--title", "two\nlines", "--ort-web"]).arg(&ort_dir), "--title");
    fails(export(t.path(), &data.join("daisy"), &dir, &["--ort-web"]).arg(&ort_dir), "daisy");
    assert!(!dir.exists());

    // `serve --static`: the folder's files with the headers threads need; nothing outside it.
    let mut cmd = retrain(t.path());
    cmd.args(["serve", "--static"]).arg(&local).args(["--port", "0"]);
    let server = Server::started(Server::spawn_command(cmd));
    let r = ureq::get(&format!("{}/", server.url)).call().unwrap();
    assert_eq!(r.header("cross-origin-opener-policy"), Some("same-origin"));
    assert_eq!(r.header("cross-origin-embedder-policy"), Some("require-corp"));
    assert!(r.into_string().unwrap().contains("retrain.js"));
    let r = ureq::get(&format!("{}/ort/ort-wasm-simd-threaded.wasm", server.url)).call().unwrap();
    assert_eq!(r.content_type(), "application/wasm");
    let mut wasm = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut wasm).unwrap();
    assert_eq!(wasm, std::fs::read(local.join("ort/ort-wasm-simd-threaded.wasm")).unwrap());
    let (status, _) = get(&format!("{}/%2e%2e/mini.onnx", server.url));
    assert_eq!(status, 404);
    let (status, _) = get(&format!("{}/v1/models", server.url));
    assert_eq!(status, 200, "the API beside the files");
    assert!(server.stop().success());
    fails(retrain(t.path()).args(["serve", "--static"]).arg(local.join("index.html")), "not a folder");
}
