//! `--precision int8` on real weights and photos: the calibrated, quantised backbone keeps
//! the float model's ImageNet answers, and its graph really is int8.

use retrain::backbone::LoadedBackbone;
use retrain::metrics::argmax;
use retrain::model::Classifier;
use retrain_onnx::proto::data_type;

mod common;

fn photos() -> Vec<std::path::PathBuf> {
    ["astronaut.png", "chelsea.png", "coffee.png", "dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "rocket.jpg"]
        .iter()
        .map(|f| common::shared(&format!("images/{f}")))
        .collect()
}

fn imagenet_probs(b: &LoadedBackbone) -> Vec<Vec<f32>> {
    let mut c = Classifier::imagenet(b, 2).unwrap();
    c.classify(&photos(), &indicatif::ProgressBar::hidden())
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().probabilities)
        .collect()
}

#[test]
fn int8_mobilenet_v2_keeps_the_float_answers() {
    let weights = common::shared("weights/mobilenet_v2-b0353104.pth");
    let mut b = LoadedBackbone::load("mobilenet_v2", Some(&weights), true).unwrap();
    let float_key = b.cache_key();
    let fp32 = imagenet_probs(&b);
    let cache = tempfile::tempdir().unwrap();
    b.calibrate_int8(&photos(), 2, Some(cache.path())).unwrap();
    let measured = b.int8.clone().unwrap();
    // A second calibration on the same photos reads the cached ranges: the same numbers.
    let mut again = LoadedBackbone::load("mobilenet_v2", Some(&weights), true).unwrap();
    again.calibrate_int8(&photos(), 2, Some(cache.path())).unwrap();
    assert_eq!(again.int8.as_ref(), Some(&measured));
    assert_eq!(std::fs::read_dir(cache.path().join("int8")).unwrap().count(), 1);
    assert_ne!(b.cache_key(), float_key, "int8 features must not be read from the fp32 cache");
    let int8 = imagenet_probs(&b);

    // Where the float model is sure (5 of the 8 photos), the int8 one gives the same class
    // with a similar probability; the others (astronaut, horses, rocket: top-1 under 0.3)
    // are not ImageNet classes to begin with.
    let mut sure = 0;
    for (a, q) in fp32.iter().zip(&int8) {
        assert_ne!(a, q, "the quantised model computes something else than the float one");
        let top = argmax(a);
        if a[top] > 0.5 {
            sure += 1;
            assert_eq!(argmax(q), top);
            assert!((a[top] - q[top]).abs() < 0.2, "top-1 probability {} vs {}", a[top], q[top]);
        }
    }
    assert_eq!(sure, 5);

    // The graph: Conv weights stored as int8, activations wrapped in QuantizeLinear, the
    // first Conv and the classifier left float, metadata saying so.
    let m = retrain_onnx::decode(&b.imagenet_model().unwrap(), std::path::Path::new("mnv2")).unwrap();
    let g = m.graph.as_ref().unwrap();
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    let convs = count("Conv");
    assert_eq!(convs, 52);
    assert_eq!(g.initializer.iter().filter(|t| t.data_type == data_type::INT8 && t.dims.len() == 4).count(), convs - 1);
    assert!(count("QuantizeLinear") >= 60, "{} QuantizeLinear", count("QuantizeLinear"));
    let first = g.node.iter().find(|n| n.op_type == "Conv").unwrap();
    assert!(!first.input[0].ends_with("_dq"), "first Conv reads the float image");
    let gemm = g.node.iter().find(|n| n.op_type == "Gemm").unwrap();
    assert!(!gemm.input[0].ends_with("_dq") && !gemm.input[1].ends_with("_dq"), "classifier stays float");
    assert!(retrain_onnx::metadata(&m, "retrain.precision").unwrap().starts_with("int8"));
}
