//! A `retrain serve` child on a loopback port and the HTTP client calls the tests make of it.

use super::retrain;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// `retrain serve MODELS --port 0 --threads 2 EXTRA...` and the first line it printed.
    pub fn spawn(home: &Path, models: &[&Path], extra: &[&str]) -> (Child, String) {
        let mut cmd = retrain(home);
        cmd.arg("serve").args(models).args(["--port", "0", "--threads", "2"]).args(extra);
        Server::spawn_command(cmd)
    }

    /// Any command that ends in `retrain serve`, and the first line it printed.
    pub fn spawn_command(mut cmd: std::process::Command) -> (Child, String) {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        (child, line)
    }

    pub fn start(home: &Path, models: &[&Path], extra: &[&str]) -> Server {
        Server::started(Server::spawn(home, models, extra))
    }

    /// The server whose first line was `listening on URL`; otherwise what it said, as a panic.
    pub fn started((mut child, line): (Child, String)) -> Server {
        let Some(url) = line.trim().strip_prefix("listening on ").filter(|u| u.contains("://127.0.0.1:")) else {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the server did not start: {line:?}\n{err}");
        };
        Server { url: url.to_string(), child }
    }

    /// The `host:port` it listens on.
    pub fn addr(&self) -> &str {
        self.url.split("://").nth(1).unwrap()
    }

    /// Peak resident memory so far, kB.
    pub fn peak_kb(&self) -> u64 {
        self.status_kb("VmHWM:")
    }

    fn status_kb(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS:")
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, JSON body (Null when not JSON) and the Retry-After header of an answer.
pub fn answer(r: Result<ureq::Response, ureq::Error>) -> (u16, Value, Option<String>) {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("no answer: {e}"),
    };
    let (status, retry) = (r.status(), r.header("Retry-After").map(str::to_owned));
    let body = r.into_string().unwrap();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null), retry)
}

pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, Value, Option<String>) {
    answer(ureq::post(url).set("Content-Type", content_type).send_bytes(body))
}

pub fn get(url: &str) -> (u16, String) {
    match ureq::get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("no answer: {e}"),
    }
}

pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "retrain-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The value of the Prometheus series `name` (with its labels) in a `/metrics` text.
pub fn metric(metrics: &str, name: &str) -> f64 {
    let line = metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}
