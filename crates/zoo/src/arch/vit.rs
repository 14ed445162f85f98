//! torchvision `vit_b_16` (Dosovitskiy et al. 2020): 16×16 patches, 12 pre-norm encoder
//! layers of 12-head self-attention, the class token's final state as features.

use super::ops::{
    act, add, layer_norm, linear, linear_nd, matmul_bias, reshape, transpose, transpose_rows, Act, Conv, Hw, Pad,
};
use super::Trunk;
use crate::graph::Weights;
use retrain_onnx::{Attr, GraphBuilder};

const DIM: usize = 768;
const HEADS: usize = 12;
const LAYERS: usize = 12;
const MLP: usize = 3072;
const EPS: f32 = 1e-6;

fn attention(g: &mut GraphBuilder, w: &mut Weights, x: &str, p: &str) -> String {
    let wt = w.get(&format!("{p}.in_proj_weight"), &[3 * DIM, DIM]);
    let b = w.get(&format!("{p}.in_proj_bias"), &[3 * DIM]);
    let hd = (DIM / HEADS) as i64;
    let mut qkv = Vec::new();
    for i in 0..3 {
        let m = transpose_rows(&wt, i * DIM..(i + 1) * DIM, DIM);
        let y = matmul_bias(g, x, &m, &b[i * DIM..(i + 1) * DIM], DIM, DIM);
        let y = reshape(g, &y, &[0, 0, HEADS as i64, hd]);
        qkv.push(transpose(g, &y, if i == 1 { &[0, 2, 3, 1] } else { &[0, 2, 1, 3] }));
    }
    let scores = g.node("MatMul", &[&qkv[0], &qkv[1]], vec![]);
    let scale = g.constant_f32("attn_scale", &[], &[1.0 / (hd as f32).sqrt()]);
    let scores = g.node("Mul", &[&scores, &scale], vec![]);
    let probs = g.node("Softmax", &[&scores], vec![Attr::Int("axis", -1)]);
    let y = g.node("MatMul", &[&probs, &qkv[2]], vec![]);
    let y = transpose(g, &y, &[0, 2, 1, 3]);
    let y = reshape(g, &y, &[0, 0, DIM as i64]);
    linear_nd(g, w, &y, &format!("{p}.out_proj"), DIM, DIM)
}

pub(crate) fn vit_b_16(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let x = Conv::new("conv_proj", 3, DIM, 16).stride(16).pad(Pad::Explicit(0, 0)).bias().build(g, w, x, &mut hw);
    let tokens = hw.0 * hw.1;
    let x = reshape(g, &x, &[0, DIM as i64, tokens as i64]);
    let x = transpose(g, &x, &[0, 2, 1]);
    // The class token, broadcast over the batch: (first patch · 0) + token.
    let start = g.constant_i64("start", &[0]);
    let end = g.constant_i64("end", &[1]);
    let axis = g.constant_i64("axis", &[1]);
    let first = g.node("Slice", &[&x, &start, &end, &axis], vec![]);
    let zero = g.constant_f32("zero", &[], &[0.0]);
    let first = g.node("Mul", &[&first, &zero], vec![]);
    let cls = w.get("class_token", &[1, 1, DIM]);
    let cls = g.constant_f32("class_token", &[1, 1, DIM], &cls);
    let cls = g.node("Add", &[&first, &cls], vec![]);
    let x = g.node("Concat", &[&cls, &x], vec![Attr::Int("axis", 1)]);
    let pos = w.get("encoder.pos_embedding", &[1, tokens + 1, DIM]);
    let pos = g.constant_f32("pos_embedding", &[1, tokens + 1, DIM], &pos);
    let mut x = add(g, &x, &pos);
    for i in 0..LAYERS {
        let p = format!("encoder.layers.encoder_layer_{i}");
        let y = layer_norm(g, w, &x, &format!("{p}.ln_1"), DIM, EPS);
        let y = attention(g, w, &y, &format!("{p}.self_attention"));
        x = add(g, &x, &y);
        let y = layer_norm(g, w, &x, &format!("{p}.ln_2"), DIM, EPS);
        let y = linear_nd(g, w, &y, &format!("{p}.mlp.0"), DIM, MLP);
        let y = act(g, &y, Act::Gelu);
        let y = linear_nd(g, w, &y, &format!("{p}.mlp.3"), MLP, DIM);
        x = add(g, &x, &y);
    }
    let x = layer_norm(g, w, &x, "encoder.ln", DIM, EPS);
    let idx = g.constant_i64("cls_index", &[0]);
    let cls = g.node("Gather", &[&x, &idx], vec![Attr::Int("axis", 1)]);
    let features = reshape(g, &cls, &[0, DIM as i64]);
    let logits = logits.then(|| linear(g, w, &features, "heads.head", DIM, 1000));
    Trunk { features, logits }
}
