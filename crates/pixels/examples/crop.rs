//! Writes the prepared crop of an image as raw RGB bytes: `crop IMAGE RESIZE CROP OUT.rgb`.
//! For comparing retrain's preprocessing with another implementation's, byte for byte.
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 5 {
        eprintln!("usage: crop IMAGE RESIZE CROP OUT.rgb");
        std::process::exit(2);
    }
    let g = retrain_pixels::Geometry {
        resize: a[2].parse().expect("RESIZE"),
        crop: a[3].parse().expect("CROP"),
        filter: retrain_pixels::Filter::Bilinear,
    };
    match retrain_pixels::load(std::path::Path::new(&a[1]), g, Default::default()) {
        Ok(px) => std::fs::write(&a[4], px).expect("write OUT"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
