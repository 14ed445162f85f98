//! The page's preprocessing as an ONNX graph, so the browser resizes as retrain does rather
//! than as a canvas does: the decoded photo's RGBA pixels in, the model's `image` input out.
//! ONNX `Resize` with antialiasing (opset 18) stretches the filter by the scale as Pillow
//! does; with `exclude_outside` the weights are renormalised at the borders as Pillow's are.
//! The sizes and the crop window come from the page (`retrain.js` computes them as
//! `retrain_pixels::prepare` does), so the graph does no shape arithmetic of its own.

use retrain_onnx::proto;
use retrain_onnx::{Attr, Dim, GraphBuilder};
use retrain_pixels::Filter;

pub const OPSET: i64 = 18;

/// The graph: `rgba` uint8 [1, H, W, 4], `sizes` int64 [2] (the resized height and width),
/// `starts` and `ends` int64 [2] (the crop window in the resized image) → `image` uint8
/// [1, h, w, 3].
pub fn graph(filter: Filter) -> proto::ModelProto {
    let mut b = GraphBuilder::new("retrain_web_preprocess");
    let rgba = b.input_u8("rgba", &[Dim::Fixed(1), Dim::Named("height"), Dim::Named("width"), Dim::Fixed(4)]);
    let sizes = b.input_i64("sizes", &[Dim::Fixed(2)]);
    let starts = b.input_i64("starts", &[Dim::Fixed(2)]);
    let ends = b.input_i64("ends", &[Dim::Fixed(2)]);
    let (zero, three, channels) =
        (b.constant_i64("zero", &[0]), b.constant_i64("three", &[3]), b.constant_i64("c", &[3]));
    let rgb = b.node("Slice", &[&rgba, &zero, &three, &channels], vec![]);
    let mode = match filter {
        Filter::Bilinear => "linear",
        Filter::Bicubic => "cubic",
    };
    let resized = b.node(
        "Resize",
        &[&rgb, "", "", &sizes],
        vec![
            Attr::Str("mode", mode.into()),
            Attr::Int("antialias", 1),
            Attr::Ints("axes", vec![1, 2]),
            Attr::Str("coordinate_transformation_mode", "half_pixel".into()),
            // Pillow's bicubic filter.
            Attr::Float("cubic_coeff_a", -0.5),
            Attr::Int("exclude_outside", 1),
        ],
    );
    let hw = b.constant_i64("hw", &[1, 2]);
    b.node_to("Slice", &[&resized, &starts, &ends, &hw], vec![], "image");
    b.output_u8("image", &[Dim::Fixed(1), Dim::Named("crop_h"), Dim::Named("crop_w"), Dim::Fixed(3)]);
    b.finish_with(&[], 8, vec![proto::OperatorSetIdProto { domain: String::new(), version: OPSET }], vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn shared(rel: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
    }

    /// The crop window of a `w`×`h` photo, as retrain.js computes it.
    fn window(w: u64, h: u64, resize: u64, crop: u64) -> ([i64; 2], [i64; 2], [i64; 2]) {
        let scale = |long: u64, short: u64| {
            let num = resize * long;
            let (q, r) = (num / short, num % short);
            q + (2 * r > short || (2 * r == short && q % 2 == 1)) as u64
        };
        let (rw, rh) = if w <= h { (resize, scale(h, w)) } else { (scale(w, h), resize) };
        let off = |size: u64| {
            let d = size.saturating_sub(crop);
            let (q, r) = (d / 2, d % 2);
            q + (r == 1 && q % 2 == 1) as u64
        };
        let (top, left) = (off(rh), off(rw));
        let (ch, cw) = (crop.min(rh), crop.min(rw));
        ([rh as i64, rw as i64], [top as i64, left as i64], [(top + ch) as i64, (left + cw) as i64])
    }

    #[test]
    fn the_graph_resizes_and_crops_as_retrain_does_within_one_level() {
        let model = retrain_onnx::encode(&graph(Filter::Bilinear));
        let mut session = retrain_features::Session::new(&model, "preprocess", 1).unwrap();
        let (mut differ, mut total, mut worst) = (0usize, 0usize, 0u8);
        let mut photos: Vec<PathBuf> = ["ants", "bees"]
            .iter()
            .flat_map(|c| std::fs::read_dir(shared(&format!("data/hymenoptera/val/{c}"))).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        photos.sort();
        for p in photos.iter().step_by(8) {
            let img = retrain_pixels::decode(p).unwrap();
            let g = retrain_pixels::Geometry { resize: 256, crop: 224, filter: Filter::Bilinear };
            let want = retrain_pixels::prepare(&img, g);
            let rgba: Vec<u8> = img.pixels().flat_map(|px| [px[0], px[1], px[2], 255]).collect();
            let (sizes, starts, ends) = window(img.width() as u64, img.height() as u64, 256, 224);
            let got = session
                .run_u8(
                    ("rgba", vec![1, img.height() as usize, img.width() as usize, 4], rgba),
                    &[("sizes", sizes.to_vec()), ("starts", starts.to_vec()), ("ends", ends.to_vec())],
                )
                .unwrap();
            let (shape, got) = (&got[0].1, &got[0].2);
            assert_eq!(shape, &vec![1, 224, 224, 3], "{}", p.display());
            for (a, b) in want.iter().zip(got) {
                worst = worst.max(a.abs_diff(*b));
                differ += (a != b) as usize;
            }
            total += want.len();
        }
        assert!(worst <= 1, "a pixel differs by {worst} levels from retrain's resize");
        assert!((differ as f64) < 0.002 * total as f64, "{differ} of {total} values differ");
    }
}
