//! The fine-tuning tail (burn) against the same graph in ONNX Runtime: for zoo families, the
//! model is cut at a block boundary, the trunk runs in ORT and the tail in burn, and the logits
//! must match the whole graph run in ORT. Weights: the synthetic torchvision-named tensors of
//! the parity fixtures (tools/make_parity_fixtures.py), so every family is covered without
//! downloads; the head is a fixed synthetic 5-class linear layer.

use retrain_features::Session;
use retrain_tune::{Tail, Trainer, TuneConfig};
use retrain_weights::{synthetic, synthetic_bytes};
use retrain_zoo::{GraphOutputs, LinearHead};

mod common;

/// Max |Δlogit| / max |logit| between ORT's whole graph and ORT trunk + burn tail, cutting
/// before block `first` (counted from the end when negative).
fn tail_vs_ort(model: &str, first: isize) -> Result<f32, String> {
    tail_vs_ort_with(model, first, false)
}

/// As [`tail_vs_ort`]; with `batchnorm_nodes` the graph keeps BatchNormalization nodes (as a
/// fine-tune that trains them builds it), the trunk is folded as fine-tuning folds it, and
/// the tail evaluates its BatchNorms on their running statistics.
fn tail_vs_ort_with(model: &str, first: isize, batchnorm_nodes: bool) -> Result<f32, String> {
    let backbone = retrain_zoo::find(model).unwrap();
    let (sd, _) = common::fixture_state_dict(model);
    let d = backbone.feature_dim;
    let head = LinearHead {
        weight: synthetic("head.weight", &[5, d]).data,
        bias: synthetic("head.bias", &[5]).data,
        thresholds: None,
    };
    let built = retrain_zoo::build_with_blocks(
        backbone,
        &sd,
        &GraphOutputs { features: true, head: Some(head), batchnorm_nodes, ..Default::default() },
        &[],
    )
    .unwrap();
    let n_blocks = backbone.blocks.len() as isize;
    let first = if first < 0 { n_blocks + first } else { first } as usize;
    let cut = built.block_inputs[first].clone().ok_or("no cut value")?;
    let tail = Tail::from_model(&built.model, &cut, "logits").map_err(|e| e.to_string())?;
    let crop = backbone.preprocess.crop as usize;
    let pixels = synthetic_bytes(&format!("input:{model}"), 2 * crop * crop * 3);

    let mut whole = Session::new(&retrain_onnx::encode(&built.model), model, 2).unwrap();
    let out = whole.run(pixels.clone(), 2, crop).unwrap();
    let (_, _, want) = out.iter().find(|(n, _, _)| n == "logits").unwrap().clone();

    let mut trunk = retrain_onnx::truncate(&built.model, &cut);
    retrain_onnx::fold_batchnorm(&mut trunk);
    let trunk = retrain_onnx::encode(&trunk);
    let mut trunk = Session::new(&trunk, model, 2).unwrap();
    let (_, shape, acts) = trunk.run(pixels, 2, crop).unwrap().into_iter().next().unwrap();
    let trainer = Trainer::new(tail, built.model.graph.as_ref().unwrap(), TuneConfig::default()).unwrap();
    let got = trainer.logits(acts, &shape).unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{model} from block {} ({}): max|Δ| {diff:.2e}, max|logit| {scale:.2e}", first, backbone.blocks[first]);
    Ok(diff / scale)
}

fn close(model: &str, first: isize) {
    let r = tail_vs_ort(model, first).unwrap();
    assert!(r < 1e-4, "{model} cut at {first}: relative difference {r}");
}

#[test]
fn mobilenet_v2_tail_and_whole_network_match_ort() {
    close("mobilenet_v2", -4);
    close("mobilenet_v2", 0);
}

#[test]
fn efficientnet_lite0_tail_and_whole_network_match_ort() {
    // TF "SAME" padding: asymmetric pads in the stride-2 depthwise convolutions.
    close("efficientnet_lite0", -4);
    close("efficientnet_lite0", 0);
}

#[test]
fn resnet18_tail_and_whole_network_match_ort() {
    close("resnet18", -1);
    close("resnet18", 0);
}

#[test]
fn squeeze_excite_hardswish_concat_and_pooling_families_match_ort() {
    close("efficientnet_b0", -2);
    close("mobilenet_v3_small", -3);
    close("densenet121", -2);
    close("squeezenet1_1", -3);
    close("inception_v3", -3);
    close("alexnet", -1);
}

#[test]
fn transformer_families_are_refused_with_the_layer_named() {
    for model in ["vit_b_16", "convnext_tiny"] {
        let e = tail_vs_ort(model, -1).unwrap_err();
        assert!(e.contains("does not support this layer"), "{model}: {e}");
    }
}

#[test]
fn batchnorm_nodes_evaluate_as_their_folded_form_in_the_tail_and_after_export() {
    for (model, first) in [("mobilenet_v2", -4), ("efficientnet_lite0", -4), ("resnet18", -1), ("efficientnet_b0", -2)]
    {
        let r = tail_vs_ort_with(model, first, true).unwrap();
        assert!(r < 1e-4, "{model} cut at {first}: relative difference {r}");
    }
    // Folding the BatchNorm nodes gives the graph that is built folded: same nodes, same logits.
    let backbone = retrain_zoo::find("mobilenet_v2").unwrap();
    let (sd, _) = common::fixture_state_dict("mobilenet_v2");
    let build = |batchnorm_nodes| {
        let outputs = GraphOutputs { imagenet_logits: true, batchnorm_nodes, ..Default::default() };
        retrain_zoo::build(backbone, &sd, &outputs, &[]).unwrap()
    };
    let (folded, mut nodes) = (build(false), build(true));
    let bn = |m: &retrain_onnx::ModelProto| {
        m.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "BatchNormalization").count()
    };
    assert_eq!(bn(&nodes), 52, "every convolution of MobileNetV2 is followed by a BatchNorm");
    assert_eq!(retrain_onnx::fold_batchnorm(&mut nodes), 52);
    assert_eq!(bn(&nodes), 0);
    let (g0, g1) = (folded.graph.as_ref().unwrap(), nodes.graph.as_ref().unwrap());
    assert_eq!(g0.node.len(), g1.node.len());
    assert_eq!(g0.initializer.len(), g1.initializer.len());
    let crop = backbone.preprocess.crop as usize;
    let pixels = synthetic_bytes("input:fold", 2 * crop * crop * 3);
    let run = |m: &retrain_onnx::ModelProto| {
        let mut s = Session::new(&retrain_onnx::encode(m), "mobilenet_v2", 2).unwrap();
        s.run(pixels.clone(), 2, crop).unwrap().into_iter().find(|(n, _, _)| n == "imagenet_logits").unwrap().2
    };
    let (a, b) = (run(&folded), run(&nodes));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff / scale < 1e-5, "max|Δ| {diff} of {scale}");
}
