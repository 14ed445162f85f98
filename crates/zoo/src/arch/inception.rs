//! torchvision `inception_v3` (Szegedy et al. 2015); the auxiliary classifier is ignored,
//! `transform_input` is expressed by the registry's normalisation.

use super::ops::{concat, pool, Act, Conv, Hw, Pad};
use super::{pooled_with_fc, Trunk};
use crate::graph::Weights;
use retrain_onnx::GraphBuilder;

struct Net<'a, 'w> {
    g: &'a mut GraphBuilder,
    w: &'a mut Weights<'w>,
}

impl Net<'_, '_> {
    /// `BasicConv2d`: conv (no bias) + BatchNorm (eps 0.001) + ReLU. `pad`: PyTorch's
    /// `(k-1)/2` when true, none otherwise.
    fn conv(
        &mut self,
        x: &str,
        hw: &mut Hw,
        name: &str,
        cin: usize,
        cout: usize,
        k: (usize, usize),
        stride: usize,
        pad: bool,
    ) -> String {
        Conv::new(format!("{name}.conv"), cin, cout, k.0)
            .kernel(k.0, k.1)
            .stride(stride)
            .pad(if pad { Pad::Same } else { Pad::Explicit(0, 0) })
            .bn(format!("{name}.bn"), 1e-3)
            .act(Act::Relu)
            .build(self.g, self.w, x, hw)
    }

    fn avg3(&mut self, x: &str, hw: Hw) -> String {
        let mut h = hw;
        pool(self.g, x, false, 3, 1, 1, false, &mut h)
    }

    fn a(&mut self, x: &str, hw: &mut Hw, p: &str, cin: usize, pool_features: usize) -> String {
        let h = *hw;
        let b1 = self.conv(x, &mut h.clone(), &format!("{p}.branch1x1"), cin, 64, (1, 1), 1, false);
        let b5 = self.conv(x, &mut h.clone(), &format!("{p}.branch5x5_1"), cin, 48, (1, 1), 1, false);
        let b5 = self.conv(&b5, &mut h.clone(), &format!("{p}.branch5x5_2"), 48, 64, (5, 5), 1, true);
        let d = self.conv(x, &mut h.clone(), &format!("{p}.branch3x3dbl_1"), cin, 64, (1, 1), 1, false);
        let d = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_2"), 64, 96, (3, 3), 1, true);
        let d = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_3"), 96, 96, (3, 3), 1, true);
        let bp = self.avg3(x, h);
        let bp = self.conv(&bp, &mut h.clone(), &format!("{p}.branch_pool"), cin, pool_features, (1, 1), 1, false);
        concat(self.g, &[&b1, &b5, &d, &bp], 1)
    }

    fn b(&mut self, x: &str, hw: &mut Hw, p: &str, cin: usize) -> String {
        let h = *hw;
        let mut out = h;
        let b3 = self.conv(x, &mut out, &format!("{p}.branch3x3"), cin, 384, (3, 3), 2, false);
        let d = self.conv(x, &mut h.clone(), &format!("{p}.branch3x3dbl_1"), cin, 64, (1, 1), 1, false);
        let d = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_2"), 64, 96, (3, 3), 1, true);
        let d = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_3"), 96, 96, (3, 3), 2, false);
        let bp = pool(self.g, x, true, 3, 2, 0, false, &mut h.clone());
        *hw = out;
        concat(self.g, &[&b3, &d, &bp], 1)
    }

    fn c(&mut self, x: &str, hw: &mut Hw, p: &str, c7: usize) -> String {
        let h = *hw;
        let b1 = self.conv(x, &mut h.clone(), &format!("{p}.branch1x1"), 768, 192, (1, 1), 1, false);
        let b7 = self.conv(x, &mut h.clone(), &format!("{p}.branch7x7_1"), 768, c7, (1, 1), 1, false);
        let b7 = self.conv(&b7, &mut h.clone(), &format!("{p}.branch7x7_2"), c7, c7, (1, 7), 1, true);
        let b7 = self.conv(&b7, &mut h.clone(), &format!("{p}.branch7x7_3"), c7, 192, (7, 1), 1, true);
        let mut d = self.conv(x, &mut h.clone(), &format!("{p}.branch7x7dbl_1"), 768, c7, (1, 1), 1, false);
        for (i, k, cout) in [(2, (7, 1), c7), (3, (1, 7), c7), (4, (7, 1), c7), (5, (1, 7), 192)] {
            d = self.conv(&d, &mut h.clone(), &format!("{p}.branch7x7dbl_{i}"), c7, cout, k, 1, true);
        }
        let bp = self.avg3(x, h);
        let bp = self.conv(&bp, &mut h.clone(), &format!("{p}.branch_pool"), 768, 192, (1, 1), 1, false);
        concat(self.g, &[&b1, &b7, &d, &bp], 1)
    }

    fn d(&mut self, x: &str, hw: &mut Hw, p: &str) -> String {
        let h = *hw;
        let mut out = h;
        let b3 = self.conv(x, &mut h.clone(), &format!("{p}.branch3x3_1"), 768, 192, (1, 1), 1, false);
        let b3 = self.conv(&b3, &mut out, &format!("{p}.branch3x3_2"), 192, 320, (3, 3), 2, false);
        let b7 = self.conv(x, &mut h.clone(), &format!("{p}.branch7x7x3_1"), 768, 192, (1, 1), 1, false);
        let b7 = self.conv(&b7, &mut h.clone(), &format!("{p}.branch7x7x3_2"), 192, 192, (1, 7), 1, true);
        let b7 = self.conv(&b7, &mut h.clone(), &format!("{p}.branch7x7x3_3"), 192, 192, (7, 1), 1, true);
        let b7 = self.conv(&b7, &mut h.clone(), &format!("{p}.branch7x7x3_4"), 192, 192, (3, 3), 2, false);
        let bp = pool(self.g, x, true, 3, 2, 0, false, &mut h.clone());
        *hw = out;
        concat(self.g, &[&b3, &b7, &bp], 1)
    }

    fn e(&mut self, x: &str, hw: &mut Hw, p: &str, cin: usize) -> String {
        let h = *hw;
        let b1 = self.conv(x, &mut h.clone(), &format!("{p}.branch1x1"), cin, 320, (1, 1), 1, false);
        let b3 = self.conv(x, &mut h.clone(), &format!("{p}.branch3x3_1"), cin, 384, (1, 1), 1, false);
        let b3a = self.conv(&b3, &mut h.clone(), &format!("{p}.branch3x3_2a"), 384, 384, (1, 3), 1, true);
        let b3b = self.conv(&b3, &mut h.clone(), &format!("{p}.branch3x3_2b"), 384, 384, (3, 1), 1, true);
        let b3 = concat(self.g, &[&b3a, &b3b], 1);
        let d = self.conv(x, &mut h.clone(), &format!("{p}.branch3x3dbl_1"), cin, 448, (1, 1), 1, false);
        let d = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_2"), 448, 384, (3, 3), 1, true);
        let da = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_3a"), 384, 384, (1, 3), 1, true);
        let db = self.conv(&d, &mut h.clone(), &format!("{p}.branch3x3dbl_3b"), 384, 384, (3, 1), 1, true);
        let d = concat(self.g, &[&da, &db], 1);
        let bp = self.avg3(x, h);
        let bp = self.conv(&bp, &mut h.clone(), &format!("{p}.branch_pool"), cin, 192, (1, 1), 1, false);
        concat(self.g, &[&b1, &b3, &d, &bp], 1)
    }
}

pub(crate) fn inception_v3(g: &mut GraphBuilder, w: &mut Weights, x: &str, mut hw: Hw, logits: bool) -> Trunk {
    let mut n = Net { g, w };
    let mut x = n.conv(x, &mut hw, "Conv2d_1a_3x3", 3, 32, (3, 3), 2, false);
    x = n.conv(&x, &mut hw, "Conv2d_2a_3x3", 32, 32, (3, 3), 1, false);
    x = n.conv(&x, &mut hw, "Conv2d_2b_3x3", 32, 64, (3, 3), 1, true);
    x = pool(n.g, &x, true, 3, 2, 0, false, &mut hw);
    x = n.conv(&x, &mut hw, "Conv2d_3b_1x1", 64, 80, (1, 1), 1, false);
    x = n.conv(&x, &mut hw, "Conv2d_4a_3x3", 80, 192, (3, 3), 1, false);
    x = pool(n.g, &x, true, 3, 2, 0, false, &mut hw);
    x = n.a(&x, &mut hw, "Mixed_5b", 192, 32);
    x = n.a(&x, &mut hw, "Mixed_5c", 256, 64);
    x = n.a(&x, &mut hw, "Mixed_5d", 288, 64);
    x = n.b(&x, &mut hw, "Mixed_6a", 288);
    for (name, c7) in [("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)] {
        x = n.c(&x, &mut hw, name, c7);
    }
    x = n.d(&x, &mut hw, "Mixed_7a");
    x = n.e(&x, &mut hw, "Mixed_7b", 1280);
    x = n.e(&x, &mut hw, "Mixed_7c", 2048);
    pooled_with_fc(g, w, &x, 2048, "fc", logits)
}
