//! `retrain serve`.

use super::Global;
use crate::args::ServeArgs;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

pub fn run(a: ServeArgs, g: Global) -> Result<()> {
    let token = token(a.token.as_deref())?;
    let tls = a.tls_cert.zip(a.tls_key).map(|(cert, key)| retrain_serve::TlsFiles { cert, key });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let open = token.is_none();
    let config = retrain_serve::Config {
        host: a.host.clone(),
        port: a.port,
        batching: retrain_serve::Batching {
            threads: g.threads,
            max_batch: a.batching.max_batch,
            wait: Duration::from_millis(a.batching.batch_wait_ms as u64),
            max_queue: a.max_queue,
        },
        max_body: a.max_body << 20,
        timeout: Duration::from_secs(a.timeout as u64),
        decoders: g.threads,
        limits: a.pixels.limits(),
        max_images: a.max_images,
        connections: retrain_serve::Connections {
            max: a.max_connections,
            header_timeout: Duration::from_secs(a.header_timeout as u64),
        },
        token,
        tls,
        cors: a.cors,
        reject: a.reject.reject,
        static_dir: a.static_dir,
    };
    retrain_serve::serve(&a.models, config, |addr| {
        if addr.ip().is_unspecified() && open {
            eprintln!("warning: listening on every network interface without --token: anyone who can reach this machine can use the models");
        }
        println!("listening on {scheme}://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

/// The bearer token: from `--token FILE` (its first line), else from RETRAIN_TOKEN; none when
/// neither is given.
fn token(file: Option<&Path>) -> Result<Option<String>> {
    let (token, from) = match file {
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("--token {}: cannot read it", f.display()))?;
            (text.lines().next().unwrap_or("").trim().to_string(), format!("--token {}", f.display()))
        }
        None => match std::env::var("RETRAIN_TOKEN") {
            Ok(t) => (t.trim().to_string(), "RETRAIN_TOKEN".to_string()),
            Err(_) => return Ok(None),
        },
    };
    if token.len() < 16 || token.chars().any(|c| !c.is_ascii_graphic()) {
        bail!("{from}: a token is at least 16 printable ASCII characters without spaces");
    }
    Ok(Some(token))
}
