//! Writes a backbone's ImageNet classifier as ONNX (uint8 NHWC input `image`, output
//! `imagenet_logits`): `export_backbone NAME WEIGHTS OUT.onnx`. For checking the graph
//! against other tools.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: export_backbone NAME WEIGHTS OUT.onnx");
        std::process::exit(2);
    }
    let run = || -> retrain::Result<()> {
        let b = retrain::backbone::LoadedBackbone::load(&a[1], Some(std::path::Path::new(&a[2])), true)?;
        std::fs::write(&a[3], b.imagenet_model()?)
            .map_err(|source| retrain::Error::Write { path: a[3].clone().into(), source })?;
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
