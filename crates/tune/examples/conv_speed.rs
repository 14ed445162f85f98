//! Times convolutions at a MobileNetV2 tail's shapes, forward + backward, batch 32: burn's 1×1
//! conv2d against a batched matmul and retrain's `pointwise_conv2d`, and burn's grouped conv2d
//! against retrain's depthwise convolution (`retrain_tune::depthwise_conv2d`); the tail uses
//! retrain's two.
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

fn main() {
    let dev = Device::flex().autodiff();
    let (n, c, o, hw) = (32, 160, 960, 7);
    let x = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let w = Tensor::<4>::random([o, c, 1, 1], Distribution::Normal(0.0, 0.1), &dev).require_grad();
    let dw = Tensor::<4>::random([o, 1, 3, 3], Distribution::Normal(0.0, 0.1), &dev).require_grad();
    for _ in 0..2 {
        let t = Instant::now();
        for _ in 0..10 {
            let y = conv2d(x.clone(), w.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
            let g = y.sum().backward();
            let _ = w.grad(&g);
        }
        println!("conv2d 1x1: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let t = Instant::now();
        for _ in 0..10 {
            let w2 = w.clone().reshape([1, o, c]);
            let y = w2.matmul(x.clone().reshape([n, c, hw * hw]));
            let g = y.sum().backward();
            let _ = w.grad(&g);
        }
        println!("matmul 1x1: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let b0 = Tensor::<1>::zeros([o], &dev);
        let t = Instant::now();
        for _ in 0..10 {
            let y = retrain_tune::pointwise_conv2d(x.clone(), w.clone(), b0.clone());
            let g = y.sum().backward();
            let _ = (w.grad(&g), x.grad(&g));
        }
        println!("1x1 (retrain's): {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let t = Instant::now();
        let xe = Tensor::<4>::random([n, o, hw, hw], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        for _ in 0..10 {
            let y = conv2d(xe.clone(), dw.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], o));
            let g = y.sum().backward();
            let _ = dw.grad(&g);
        }
        println!("depthwise 3x3: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let db = Tensor::<1>::zeros([o], &dev).require_grad();
        let geo = retrain_tune::Geometry { stride: [1, 1], pad: [1; 4] };
        let t = Instant::now();
        for _ in 0..10 {
            let y = retrain_tune::depthwise_conv2d(xe.clone(), dw.clone(), db.clone(), geo);
            let g = y.sum().backward();
            let _ = dw.grad(&g);
        }
        println!("depthwise 3x3 (retrain's): {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let xm = Tensor::<4>::random([n, 576, 14, 14], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let dm = Tensor::<4>::random([576, 1, 3, 3], Distribution::Normal(0.0, 0.1), &dev).require_grad();
        let bm = Tensor::<1>::zeros([576], &dev).require_grad();
        for s in [1, 2] {
            let t = Instant::now();
            for _ in 0..10 {
                let y = conv2d(xm.clone(), dm.clone(), Some(bm.clone()), ConvOptions::new([s, s], [1, 1], [1, 1], 576));
                let g = y.sum().backward();
                let _ = (dm.grad(&g), xm.grad(&g));
            }
            println!("depthwise 3x3 14x14x576 stride {s}, burn: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
            let t = Instant::now();
            for _ in 0..10 {
                let geo = retrain_tune::Geometry { stride: [s, s], pad: [1; 4] };
                let y = retrain_tune::depthwise_conv2d(xm.clone(), dm.clone(), bm.clone(), geo);
                let g = y.sum().backward();
                let _ = (dm.grad(&g), xm.grad(&g));
            }
            println!("depthwise 3x3 14x14x576 stride {s}, retrain: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        }
        let t = Instant::now();
        for _ in 0..10 {
            let u = burn::tensor::module::unfold4d(
                xe.clone(),
                [3, 3],
                burn::tensor::ops::UnfoldOptions::new([1, 1], [1, 1], [1, 1]),
            );
            let y = u.reshape([n, o, 9, hw * hw]) * dw.clone().reshape([1, o, 9, 1]);
            let y = y.sum_dim(2);
            let g = y.sum().backward();
            let _ = dw.grad(&g);
        }
        println!("depthwise 3x3 via unfold: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let plain = Device::flex();
        let xe2 = Tensor::<4>::random([n, o, hw, hw], Distribution::Normal(0.0, 1.0), &plain);
        let dw2 = Tensor::<4>::random([o, 1, 3, 3], Distribution::Normal(0.0, 0.1), &plain);
        let t = Instant::now();
        for _ in 0..10 {
            let y = conv2d(xe2.clone(), dw2.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], o));
            let _: f32 = y.sum().into_scalar();
        }
        println!("depthwise 3x3 forward only: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let x2 = Tensor::<4>::random([n, c, hw, hw], Distribution::Normal(0.0, 1.0), &plain);
        let w2 = Tensor::<4>::random([o, c, 1, 1], Distribution::Normal(0.0, 0.1), &plain);
        let t = Instant::now();
        for _ in 0..10 {
            let y = conv2d(x2.clone(), w2.clone(), None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
            let _: f32 = y.sum().into_scalar();
        }
        println!("1x1 forward only: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
    }
}
