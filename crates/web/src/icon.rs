//! The home-screen icon: three bars of a class chart on retrain's blue, drawn here rather than
//! shipped as a binary asset.

use image::{Rgba, RgbaImage};

pub fn png(size: u32) -> Vec<u8> {
    let blue = Rgba([0x1f, 0x6f, 0xeb, 0xff]);
    let white = Rgba([0xff, 0xff, 0xff, 0xff]);
    let mut img = RgbaImage::from_pixel(size, size, blue);
    // Inside the maskable safe zone (the middle 80%).
    let s = size as f32;
    for (i, len) in [0.62f32, 0.40, 0.22].iter().enumerate() {
        let y0 = (0.30 + i as f32 * 0.15) * s;
        let (x0, x1, y1) = (0.22 * s, (0.22 + len * 0.9) * s, y0 + 0.09 * s);
        for y in y0 as u32..y1 as u32 {
            for x in x0 as u32..x1 as u32 {
                img.put_pixel(x, y, white);
            }
        }
    }
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("PNG encodes in memory");
    out
}
