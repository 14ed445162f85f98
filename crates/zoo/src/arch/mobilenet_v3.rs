//! torchvision `mobilenet_v3_large` / `mobilenet_v3_small` (Howard et al. 2019).

use super::ops::{act, add, flatten, global_avg_pool, linear, make_divisible, squeeze_excite, Act, Conv, Hw};
use super::Trunk;
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

const EPS: f32 = 1e-3;

/// (input, kernel, expanded, output, squeeze-excite, hard-swish, stride), torchvision's tables.
type Row = (usize, usize, usize, usize, bool, bool, usize);
const LARGE: [Row; 15] = [
    (16, 3, 16, 16, false, false, 1),
    (16, 3, 64, 24, false, false, 2),
    (24, 3, 72, 24, false, false, 1),
    (24, 5, 72, 40, true, false, 2),
    (40, 5, 120, 40, true, false, 1),
    (40, 5, 120, 40, true, false, 1),
    (40, 3, 240, 80, false, true, 2),
    (80, 3, 200, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 184, 80, false, true, 1),
    (80, 3, 480, 112, true, true, 1),
    (112, 3, 672, 112, true, true, 1),
    (112, 5, 672, 160, true, true, 2),
    (160, 5, 960, 160, true, true, 1),
    (160, 5, 960, 160, true, true, 1),
];
const SMALL: [Row; 11] = [
    (16, 3, 16, 16, true, false, 2),
    (16, 3, 72, 24, false, false, 2),
    (24, 3, 88, 24, false, false, 1),
    (24, 5, 96, 40, true, true, 2),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 240, 40, true, true, 1),
    (40, 5, 120, 48, true, true, 1),
    (48, 5, 144, 48, true, true, 1),
    (48, 5, 288, 96, true, true, 2),
    (96, 5, 576, 96, true, true, 1),
    (96, 5, 576, 96, true, true, 1),
];

fn cna(p: &str, cin: usize, cout: usize, k: usize, a: Act) -> Conv {
    Conv::new(format!("{p}.0"), cin, cout, k).bn(format!("{p}.1"), EPS).act(a)
}

pub(crate) fn mobilenet_v3(
    g: &mut GraphBuilder,
    w: &mut Weights,
    x: &str,
    mut hw: Hw,
    large: bool,
    logits: bool,
) -> Trunk {
    let rows: &[Row] = if large { &LARGE } else { &SMALL };
    let mut x = cna("features.0", 3, 16, 3, Act::Hardswish).stride(2).build(g, w, x, &mut hw);
    for (i, &(cin, k, exp, cout, se, hs, stride)) in rows.iter().enumerate() {
        let p = format!("features.{}.block", i + 1);
        let a = if hs { Act::Hardswish } else { Act::Relu };
        let mut j = 0;
        let mut y = x.clone();
        if exp != cin {
            y = cna(&format!("{p}.0"), cin, exp, 1, a).build(g, w, &y, &mut hw);
            j += 1;
        }
        y = cna(&format!("{p}.{j}"), exp, exp, k, a).stride(stride).depthwise().build(g, w, &y, &mut hw);
        j += 1;
        if se {
            y = squeeze_excite(
                g,
                w,
                &y,
                &format!("{p}.{j}"),
                exp,
                make_divisible((exp / 4) as f64, 8),
                Act::Relu,
                true,
            );
            j += 1;
        }
        y = cna(&format!("{p}.{j}"), exp, cout, 1, Act::None).build(g, w, &y, &mut hw);
        x = if stride == 1 && cin == cout { add(g, &x, &y) } else { y };
    }
    let last_in = rows[rows.len() - 1].3;
    let x =
        cna(&format!("features.{}", rows.len() + 1), last_in, 6 * last_in, 1, Act::Hardswish).build(g, w, &x, &mut hw);
    let p = global_avg_pool(g, &x);
    let features = flatten(g, &p);
    let hidden = if large { 1280 } else { 1024 };
    let logits = logits.then(|| {
        let h = linear(g, w, &features, "classifier.0", 6 * last_in, hidden);
        let h = act(g, &h, Act::Hardswish);
        linear(g, w, &h, "classifier.3", hidden, 1000)
    });
    Trunk { features, logits }
}
