//! `retrain serve` against what an attacker or a careless client sends: shapes that would
//! allocate terabytes, forms of many parts, thin images, thousands of idle or half-open
//! connections, bodies too large for clients that send before they read, wrong tokens under
//! load; and startup mistakes that must name their cause. Each test fails on the server as it
//! was before these limits (it aborted, grew by gigabytes, or stopped answering).

mod common;

use common::server::*;
use common::*;
use image::ImageEncoder;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A three-class model trained on 18 photos: what it answers does not matter here.
fn small_model(t: &Path) -> PathBuf {
    let data = flowers_mini(&t.join("data"), 6);
    let m = t.join("fl.onnx");
    succeeds(&mut train(t, &data, &m, &[]));
    m
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&vec![90u8; (width * height) as usize], width, height, image::ExtendedColorType::L8)
        .unwrap();
    out
}

/// The count of batches and the count of those of at most `le` images, from `/metrics`.
fn batches(url: &str, le: &str) -> (f64, f64) {
    let (_, metrics) = get(&format!("{url}/metrics"));
    let value = |name: &str| metric(&metrics, name);
    (
        value("retrain_batch_size_count{model=\"fl\"}"),
        value(&format!("retrain_batch_size_bucket{{model=\"fl\",le=\"{le}\"}}")),
    )
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_else(|| panic!("no JSON error: {v}"))
}

#[test]
fn no_single_request_takes_the_server_down_or_its_memory() {
    let t = tempfile::tempdir().unwrap();
    let m = small_model(t.path());
    let server = Server::start(t.path(), &[&m], &["--max-batch", "4", "--max-images", "16", "--max-body", "8"]);
    let (u, infer) = (&server.url, format!("{}/v2/models/fl/infer", server.url));
    let healthy = || assert_eq!(get(&format!("{u}/healthz")), (200, "ok\n".to_string()));

    // 90 bytes that asked for 150 TB: refused from the shape, before allocating.
    let huge = br#"{"inputs":[{"name":"image","shape":[1000000000,224,224,3],"datatype":"UINT8","data":[0]}]}"#;
    let (status, v, _) = post(&infer, "application/json", huge);
    assert_eq!(status, 413, "{v}");
    assert!(error_of(&v).contains("1000000000 images; at most 16 in one request (--max-images)"), "{v}");
    healthy();
    // Dimensions whose product overflows, and data shorter than the shape.
    let overflow = json!({"inputs": [{"name": "image", "shape": [16, 4294967296u64, 4294967296u64, 3], "datatype": "UINT8", "data": [0]}]});
    let (status, v, _) = post(&infer, "application/json", overflow.to_string().as_bytes());
    assert_eq!(status, 400, "{v}");
    assert!(error_of(&v).contains("[n, 224, 224, 3]"), "{v}");
    let short =
        json!({"inputs": [{"name": "image", "shape": [16, 224, 224, 3], "datatype": "UINT8", "data": [1, 2, 3]}]});
    let (status, v, _) = post(&infer, "application/json", short.to_string().as_bytes());
    assert_eq!(status, 400, "{v}");
    assert!(error_of(&v).contains("needs 2408448 values; got 3"), "{v}");
    // The binary extension: the declared size must be what the shape needs and what was sent.
    let binary = |n: usize, declared: usize, sent: usize| {
        let head = json!({"inputs": [{"name": "image", "shape": [n, 224, 224, 3], "datatype": "UINT8",
            "parameters": {"binary_data_size": declared}}]})
        .to_string();
        let mut body = head.clone().into_bytes();
        body.extend(std::iter::repeat_n(128u8, sent));
        answer(
            ureq::post(&infer)
                .set("Content-Type", "application/octet-stream")
                .set("Inference-Header-Content-Length", &head.len().to_string())
                .send_bytes(&body),
        )
    };
    let (status, v, _) = binary(1000, 10, 10);
    assert_eq!(status, 413, "{v}");
    let (status, v, _) = binary(2, 10, 10);
    assert_eq!(status, 400, "{v}");
    assert!(error_of(&v).contains("binary_data_size"), "{v}");
    let (status, v, _) = binary(2, 2 * 150528, 150528);
    assert_eq!(status, 400, "{v}");
    healthy();

    // A form of 200 one-pixel images (40 kB): refused at the 17th part.
    let dot = png(1, 1);
    let many: Vec<(String, &[u8])> = (0..200).map(|i| (format!("{i}.png"), dot.as_slice())).collect();
    let many: Vec<(&str, &[u8])> = many.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    let (ct, body) = multipart(&many);
    let (status, v, _) = post(&format!("{u}/v1/predict"), &ct, &body);
    assert_eq!(status, 413, "{v}");
    assert!(error_of(&v).contains("more than 16 files in one request (--max-images)"), "{v}");
    // Sixteen of them are answered, in batches of at most --max-batch.
    let (ct, body) = multipart(&many[..16]);
    let (status, v, _) = post(&format!("{u}/v1/predict"), &ct, &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["results"].as_array().unwrap().len(), 16);
    assert!(v["results"].as_array().unwrap().iter().all(|r| r["predictions"].is_array()), "{v}");
    let (status, v, _) = binary(16, 16 * 150528, 16 * 150528);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["outputs"][0]["shape"][0], 16);
    let (count, small) = batches(u, "4");
    assert!(count >= 9.0 && small == count, "{small} of {count} batches had at most --max-batch 4 images");

    // Thin images cost their pixels, not their resized length: 1 × 1,000,000 (4 kB of PNG).
    let thin = png(1_000_000, 1);
    assert!(thin.len() < 10_000);
    let started = Instant::now();
    let (status, v, _) = post(&format!("{u}/v1/predict"), "image/png", &thin);
    let took = started.elapsed();
    assert_eq!(status, 200, "{v}");
    let (status, v, _) = post(&format!("{u}/v1/predict"), "image/png", &png(1, 1_000_000));
    assert_eq!(status, 200, "{v}");
    healthy();
    let peak_mb = server.peak_kb() / 1024;
    eprintln!("peak RSS {peak_mb} MB; the 1×1,000,000 PNG took {took:?}");
    // Before: 2.2 GB for the 200 parts, 7.1 GB and 21 s for the thin image.
    assert!(peak_mb < 700, "the server peaked at {peak_mb} MB");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(server.stop().success());
}

/// `sh -c 'ulimit -Sn LIMIT; exec retrain serve ...'`: the server starts with few descriptors.
fn serve_under_ulimit(home: &Path, model: &Path, limit: u32, extra: &[&str]) -> Server {
    let mut cmd = Command::new("sh");
    cmd.env("XDG_CACHE_HOME", home)
        .arg("-c")
        .arg(format!("ulimit -Sn {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_retrain"))
        .arg("serve")
        .arg(model)
        .args(["--port", "0", "--threads", "2"])
        .args(extra);
    Server::started(Server::spawn_command(cmd))
}

/// Whether the server has closed `s` (reads end) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn idle_and_half_open_connections_are_capped_and_timed_out() {
    let t = tempfile::tempdir().unwrap();
    let m = small_model(t.path());
    // This process's limit too, as the server raises its own.
    assert!(retrain_serve::raise_fd_limit().unwrap_or(0) > 2_200, "this test holds 2,000 sockets");
    // 256 descriptors at start, as on many machines: the server raises them itself.
    let server = serve_under_ulimit(t.path(), &m, 256, &["--header-timeout", "4"]);
    let mut held: Vec<TcpStream> = (0..2_000)
        .map(|i| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            if i % 2 == 1 {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ").unwrap();
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(get(&format!("{}/healthz", server.url)).0, 200);
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("/healthz while 2,000 idle or half-open connections are held: slowest of 10 {slowest:?}");
    // (Before: no answer at all once the descriptors ran out.)
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    // Past --header-timeout, every one of them is closed by the server.
    std::thread::sleep(Duration::from_secs(4));
    let open = held.iter_mut().map(|s| !closed_within(s, Duration::from_secs(2))).filter(|o| *o).count();
    assert_eq!(open, 0, "{open} of 2,000 idle connections still open past --header-timeout");
    // A keep-alive connection idle past it is closed too.
    let mut alive = TcpStream::connect(server.addr()).unwrap();
    alive.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let n = alive.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(!closed_within(&mut alive, Duration::from_secs(1)), "closed before --header-timeout");
    assert!(closed_within(&mut alive, Duration::from_secs(6)), "an idle keep-alive connection stays open");
    drop(held);
    assert!(server.stop().success());

    // --max-connections: one past the cap is closed at once; the held ones still work.
    let server = Server::start(t.path(), &[&m], &["--max-connections", "20"]);
    let mut held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(server.addr()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(server.addr()).unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)), "the 21st connection was kept");
    held[0].write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    held[0].read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"), "{answer}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&format!("{}/healthz", server.url)).0, 200);
    assert!(server.stop().success());
}

/// What Python's urllib (which sends the whole body before reading) gets for a body of `size`
/// bytes: the status and body of the answer, or the exception.
fn python_post(url: &str, size: usize, token: Option<&str>) -> String {
    let script = r#"
import sys, urllib.request, urllib.error
url, size, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
headers = {"Content-Type": "image/jpeg"}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, data=b"\xff" * size, headers=headers)
try:
    r = urllib.request.urlopen(req, timeout=30)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
except Exception as e:
    print("failed:", type(e).__name__, e)
"#;
    let out = Command::new("python3").args(["-c", script, url, &size.to_string(), token.unwrap_or("")]).output();
    let out = out.expect("python3 runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn refusals_reach_clients_that_send_before_reading() {
    let t = tempfile::tempdir().unwrap();
    let m = small_model(t.path());
    let server = Server::start(t.path(), &[&m], &["--max-body", "1"]);
    for size in [3_000_000, 40_000_000] {
        let got = python_post(&format!("{}/v1/predict", server.url), size, None);
        assert_eq!(got, r#"413 {"error":"request body too large (--max-body)"}"#, "{size} bytes");
    }
    // The server is fine after it.
    let got = python_post(&format!("{}/v1/predict", server.url), 100, None);
    assert!(got.starts_with("400 ") && got.contains("not an image"), "{got}");
    assert!(server.stop().success());
}

#[test]
fn startup_mistakes_name_their_cause() {
    let t = tempfile::tempdir().unwrap();
    let m = small_model(t.path());
    let fails = |args: &[&std::ffi::OsStr], says: &str| {
        let out = run(retrain(t.path()).arg("serve").args(args).args(["--port", "0"]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(says), "{args:?}: {err:?} does not say {says:?}");
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let missing = t.path().join("gone.onnx");
    fails(&[missing.as_os_str()], &format!("{}", missing.display()));
    let text = t.path().join("notes.onnx");
    std::fs::write(&text, "not a model").unwrap();
    fails(&[text.as_os_str()], "notes.onnx");
    std::fs::create_dir(t.path().join("b")).unwrap();
    let twin = t.path().join("b/fl.onnx");
    std::fs::copy(&m, &twin).unwrap();
    fails(&[m.as_os_str(), twin.as_os_str()], "would both be served as `fl`");
    fails(&[m.as_os_str(), &os("--host"), &os("no-such-host.invalid")], "no-such-host.invalid");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = run(retrain(t.path()).arg("serve").arg(&m).args(["--port", &port]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")) && err.contains("in use"), "{err}");
    let short = t.path().join("token");
    std::fs::write(&short, "abc\n").unwrap();
    fails(&[m.as_os_str(), &os("--token"), short.as_os_str()], "token");
    fails(&[m.as_os_str(), &os("--tls-cert"), text.as_os_str(), &os("--tls-key"), text.as_os_str()], "no PEM");
    fails(&[m.as_os_str(), &os("--cors"), &os("evil.example/")], "--cors \"evil.example/\": not an origin");
}

/// A self-signed certificate for 127.0.0.1 and its key, made with `openssl`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    succeeds(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// `curl` over TLS, trusting `cert`: the status line's code and the body.
fn curl(cert: &Path, url: &str, extra: &[&str]) -> (String, String) {
    let out = run(Command::new("curl").args(["-s", "-w", "\n%{http_code}", "--cacert"]).arg(cert).args(extra).arg(url));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn a_token_keeps_others_out_over_tls_and_cors_is_off_unless_asked() {
    let t = tempfile::tempdir().unwrap();
    let m = small_model(t.path());
    let token = "s3cret-token-0123456789";
    let file = t.path().join("token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let photo = std::fs::read(walk_all(&t.path().join("data"))[0].clone()).unwrap();

    let server = Server::start(t.path(), &[&m], &["--token", file.to_str().unwrap()]);
    let u = server.url.clone();
    let call = |path: &str, bearer: Option<&str>| {
        let mut r = ureq::post(&format!("{u}{path}")).set("Content-Type", "image/jpeg");
        if let Some(b) = bearer {
            r = r.set("Authorization", &format!("Bearer {b}"));
        }
        let r = match r.send_bytes(&photo) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (r.status(), r.header("WWW-Authenticate").map(str::to_owned), r.into_string().unwrap())
    };
    let (status, challenge, body) = call("/v1/predict", None);
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{body}");
    assert!(body.contains("Authorization: Bearer TOKEN"), "{body}");
    assert_eq!(call("/v1/predict", Some("s3cret-token-0123456780")).0, 401);
    assert_eq!(call("/v1/predict", Some(token)).0, 200);
    for path in ["/v1/models", "/metrics", "/v2/models/fl"] {
        assert_eq!(get(&format!("{u}{path}")).0, 401, "{path}");
    }
    assert_eq!(get(&format!("{u}/healthz")).0, 200);
    assert_eq!(get(&format!("{u}/")).0, 200, "the page itself is open: it asks for the token");
    // Python's urllib, sending a large body with a wrong token, reads the 401.
    let got = python_post(&format!("{u}/v1/predict"), 5_000_000, Some("wrong-token-wrong-token"));
    assert!(got.starts_with("401 ") && got.contains("Bearer"), "{got}");

    // Wrong tokens under load do not keep the right one out.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answered = std::thread::scope(|s| {
        let attackers: Vec<_> = (0..6)
            .map(|i| {
                let (stop, call) = (&stop, &call);
                s.spawn(move || {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert_eq!(call("/v1/predict", Some(&format!("guess-{i}-{n}-aaaaaaaaaaaa"))).0, 401);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut ok = 0;
        for _ in 0..20 {
            let (status, _, body) = call("/v1/predict", Some(token));
            assert_eq!(status, 200, "{body}");
            ok += 1;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let refused: usize = attackers.into_iter().map(|a| a.join().unwrap()).sum();
        eprintln!("{ok} answered while {refused} wrong tokens were refused");
        assert!(refused > 20, "the load was light: {refused}");
        ok
    });
    assert_eq!(answered, 20);
    // No CORS headers unless asked.
    let r = ureq::get(&format!("{u}/healthz")).set("Origin", "http://evil.example").call().unwrap();
    assert_eq!(r.header("Access-Control-Allow-Origin"), None);
    assert!(server.stop().success());

    // TLS with the token, and one allowed origin.
    let (cert, key) = certificate(t.path());
    let server = Server::start(
        t.path(),
        &[&m],
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap(), "--cors", "https://app.example"],
    );
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);
    let url = format!("{}/v1/models", server.url);
    let (code, body) = curl(&cert, &url, &[]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"fl\""), "{body}");
    let (code, _) = curl(&cert, &url, &["-o", "/dev/null", "-D", "-", "-H", "Origin: https://app.example"]);
    assert_eq!(code, "200");
    let out = run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"]).arg(&cert).args([
        "-H",
        "Origin: https://app.example",
        &url,
    ]));
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
    let out = run(Command::new("curl").args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"]).arg(&cert).args([
        "-H",
        "Origin: https://evil.example",
        &url,
    ]));
    assert!(!String::from_utf8_lossy(&out.stdout).to_lowercase().contains("access-control-allow-origin"));
    // Plain HTTP to the TLS port gets no answer, and a client that never finishes its handshake
    // is not held: a silent connection is closed by --header-timeout like any other.
    let plain = ureq::get(&format!("http://{}/v1/models", server.addr())).timeout(Duration::from_secs(5)).call();
    assert!(plain.is_err());
    assert!(server.stop().success());
}
