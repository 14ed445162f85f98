//! Feature-extraction throughput of one backbone in ONNX Runtime, as retrain runs it:
//! `backbone_speed NAME [BATCHES] [BATCH] [THREADS] [WEIGHTS|-] [STREAMS]`. Without WEIGHTS (or
//! with `-`) the synthetic weights of the parity fixture are used (speed does not depend on the
//! values). STREAMS (default 1) sessions run side by side, each with THREADS / STREAMS threads
//! on BATCH / STREAMS images at a time, as `retrain` splits a batch. Prints JSON.
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let name = a.get(1).expect("usage: backbone_speed NAME [BATCHES] [BATCH] [THREADS] [WEIGHTS]");
    let batches: usize = a.get(2).map_or(3, |v| v.parse().expect("BATCHES"));
    let batch: usize = a.get(3).map_or(32, |v| v.parse().expect("BATCH"));
    let threads: usize = a.get(4).map_or(2, |v| v.parse().expect("THREADS"));
    let b = retrain_zoo::find(name).expect("known model");
    let streams: usize = a.get(6).map_or(1, |v| v.parse().expect("STREAMS")).max(1);
    let sd = match a.get(5).filter(|w| *w != "-") {
        Some(w) => retrain_weights::load_state_dict(std::path::Path::new(w)).expect("weights"),
        None => {
            let fx = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../tests/fixtures/parity/{name}.json"));
            let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fx).expect("fixture")).unwrap();
            fx["tensors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let n = t[0].as_str().unwrap();
                    let s: Vec<usize> = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                    (n.to_string(), retrain_weights::synthetic(n, &s))
                })
                .collect()
        }
    };
    // What a run pays once before its first image: building the graph, making the sessions
    // (side by side, as retrain makes them) and their first run.
    let t = Instant::now();
    let g =
        retrain_zoo::build(b, &sd, &retrain_zoo::GraphOutputs { features: true, ..Default::default() }, &[]).unwrap();
    let model = retrain_onnx::encode(&g);
    let build_s = t.elapsed().as_secs_f64();
    let crop = b.preprocess.crop as usize;
    let per = batch.div_ceil(streams);
    let px = retrain_weights::synthetic_bytes("speed", per * crop * crop * 3);
    let t = Instant::now();
    let mut sessions: Vec<_> = std::thread::scope(|scope| {
        let made: Vec<_> = (0..streams)
            .map(|_| scope.spawn(|| retrain_features::Session::new(&model, name, (threads / streams).max(1)).unwrap()))
            .collect();
        made.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let session_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|scope| {
        for s in &mut sessions {
            let px = &px;
            scope.spawn(move || s.run(px.clone(), per, crop).unwrap());
        }
    });
    let first_run_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|scope| {
        for s in &mut sessions {
            let px = &px;
            scope.spawn(move || {
                for _ in 0..batches {
                    s.run(px.clone(), per, crop).unwrap();
                }
            });
        }
    });
    let ips = (batches * per * streams) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"model": name, "images_per_s": ips, "batch": batch, "threads": threads, "streams": streams,
            "build_s": build_s, "sessions_s": session_s, "first_run_s": first_run_s})
    );
}
