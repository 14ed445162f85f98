//! Single-thread cost of each pixel stage over a folder of images: read, decode (as the
//! pipeline does it, and at full size for comparison), resize + crop.
//! `decode_speed DIR [RESIZE] [CROP]`. For deciding where the pipeline's CPU time goes.
use std::time::{Duration, Instant};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: decode_speed DIR [RESIZE] [CROP]");
    let resize = std::env::args().nth(2).map_or(256, |v| v.parse().expect("RESIZE"));
    let crop = std::env::args().nth(3).map_or(224, |v| v.parse().expect("CROP"));
    let g = retrain_pixels::Geometry { resize, crop, filter: retrain_pixels::Filter::Bilinear };
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).expect("readable folder").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.push(p)
            }
        }
    }
    let (mut read, mut decode, mut prep, mut full) = (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut n = 0;
    for f in &files {
        let t = Instant::now();
        let bytes = std::fs::read(f).expect("readable file");
        read += t.elapsed();
        let t = Instant::now();
        let Ok(img) = retrain_pixels::decode_for(&bytes, f, g, Default::default()) else { continue };
        decode += t.elapsed();
        let t = Instant::now();
        std::hint::black_box(retrain_pixels::prepare(&img, g));
        prep += t.elapsed();
        let t = Instant::now();
        let _ = std::hint::black_box(retrain_pixels::decode_bytes(&bytes, f, Default::default()));
        full += t.elapsed();
        n += 1;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
    println!(
        "{n} images: read {:.2} ms, decode {:.2} ms (full-size decode {:.2} ms), resize+crop {:.2} ms per image (one thread)",
        ms(read),
        ms(decode),
        ms(full),
        ms(prep)
    );
}
