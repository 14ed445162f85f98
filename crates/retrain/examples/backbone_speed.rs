//! Feature-extraction throughput of one backbone in ONNX Runtime, as retrain runs it:
//! `backbone_speed NAME [BATCHES] [BATCH] [THREADS] [WEIGHTS]`. Without WEIGHTS the synthetic
//! weights of the parity fixture are used (speed does not depend on the values). Prints JSON.
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let name = a.get(1).expect("usage: backbone_speed NAME [BATCHES] [BATCH] [THREADS] [WEIGHTS]");
    let batches: usize = a.get(2).map_or(3, |v| v.parse().expect("BATCHES"));
    let batch: usize = a.get(3).map_or(32, |v| v.parse().expect("BATCH"));
    let threads: usize = a.get(4).map_or(2, |v| v.parse().expect("THREADS"));
    let b = retrain_zoo::find(name).expect("known model");
    let sd = match a.get(5) {
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
    let g =
        retrain_zoo::build(b, &sd, &retrain_zoo::GraphOutputs { features: true, ..Default::default() }, &[]).unwrap();
    let mut s = retrain_features::Session::new(&retrain_onnx::encode(&g), name, threads).unwrap();
    let crop = b.preprocess.crop as usize;
    let px = retrain_weights::synthetic_bytes("speed", batch * crop * crop * 3);
    s.run(px.clone(), batch, crop).unwrap();
    let t = Instant::now();
    for _ in 0..batches {
        s.run(px.clone(), batch, crop).unwrap();
    }
    let ips = (batches * batch) as f64 / t.elapsed().as_secs_f64();
    println!("{}", serde_json::json!({"model": name, "images_per_s": ips, "batch": batch, "threads": threads}));
}
