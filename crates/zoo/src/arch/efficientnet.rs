//! torchvision `efficientnet_b0` … `efficientnet_b3` (Tan & Le 2019): MBConv blocks with
//! squeeze-excite and SiLU, width and depth scaled per variant.

use super::ops::{add, make_divisible, squeeze_excite, Act, Conv, Hw};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-5;
/// (expansion, kernel, stride, input, output, layers): the B0 table, shared with the Lite variants.
pub(crate) const B0: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

fn cna(p: &str, cin: usize, cout: usize, k: usize, a: Act) -> Conv {
    Conv::new(format!("{p}.0"), cin, cout, k).bn(format!("{p}.1"), EPS).act(a)
}

pub(crate) fn efficientnet(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    mut hw: Hw,
    width: f64,
    depth: f64,
    logits: bool,
) -> Trunk {
    let ch = |c: usize| make_divisible(c as f64 * width, 8);
    let stem = ch(32);
    let mut x = cna("features.0", 3, stem, 3, Act::Silu).stride(2).build(g, w, x, &mut hw);
    for (si, &(e, k, s, cin0, cout0, n)) in B0.iter().enumerate() {
        let (cin0, cout) = (ch(cin0), ch(cout0));
        let layers = (n as f64 * depth).ceil() as usize;
        for li in 0..layers {
            let (cin, stride) = if li == 0 { (cin0, s) } else { (cout, 1) };
            let exp = make_divisible(cin as f64 * e as f64, 8);
            let p = format!("features.{}.{li}.block", si + 1);
            let mut j = 0;
            let mut y = x.clone();
            if exp != cin {
                y = cna(&format!("{p}.0"), cin, exp, 1, Act::Silu).build(g, w, &y, &mut hw);
                j += 1;
            }
            y = cna(&format!("{p}.{j}"), exp, exp, k, Act::Silu).stride(stride).depthwise().build(g, w, &y, &mut hw);
            j += 1;
            y = squeeze_excite(g, w, &y, &format!("{p}.{j}"), exp, (cin / 4).max(1), Act::Silu, false);
            j += 1;
            y = cna(&format!("{p}.{j}"), exp, cout, 1, Act::None).build(g, w, &y, &mut hw);
            x = if stride == 1 && cin == cout { add(g, &x, &y) } else { y };
        }
    }
    let last_in = ch(320);
    let x = cna("features.8", last_in, 4 * last_in, 1, Act::Silu).build(g, w, &x, &mut hw);
    pooled_with_fc(g, w, &x, 4 * last_in, "classifier.1", logits)
}
