//! Files to pixels: decoding any common image file to RGB and preparing it exactly as a
//! backbone was trained (resize of the shorter side, center crop), the first stage of the flow.

mod augment;
mod resample;
pub use augment::{augmented, Augment, Rng};
pub use resample::{resize_rgb8, resize_window_rgb8, Filter};

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not an image (unrecognised format)")]
    NotImage { path: PathBuf },
    #[error("{path}: corrupt or truncated image: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: image too large: {width}×{height} = {} pixels (limit {limit}, --max-pixels)", giga(u64::from(*.width) * u64::from(*.height)))]
    TooLarge { path: PathBuf, width: u32, height: u32, limit: u64 },
    #[error("{path}: file too large for an image: {} MB (limit {} MB, --max-file-size); not read", .size >> 20, .limit >> 20)]
    FileTooLarge { path: PathBuf, size: u64, limit: u64 },
    #[error("{path}: not a regular file")]
    NotAFile { path: PathBuf },
}

/// `4.2 G` for 4_225_000_000: the size of a refused image, readable at a glance.
fn giga(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1} G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

/// Pillow's `Image.MAX_IMAGE_PIXELS`: above it Pillow raises `DecompressionBombError`.
pub const DEFAULT_MAX_PIXELS: u64 = 178_956_970;

/// Files larger than this are not read as images (a phone's video beside its photos).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 << 20;

/// What a decoder may allocate. An image is refused from its header, before any pixel is
/// decoded, when it claims more than `max_pixels`; the decoders' own allocation is capped
/// at what an image of that many pixels needs, so a header that lies cannot make them
/// allocate more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_pixels: u64,
    /// Bytes of one image file at most, checked from its metadata before reading it.
    pub max_file_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_pixels: DEFAULT_MAX_PIXELS, max_file_size: DEFAULT_MAX_FILE_SIZE }
    }
}

impl Limits {
    /// Bytes a decoder may hold: the largest pixel format (16-bit RGBA, 8 bytes) at the
    /// limit, plus room for its tables.
    fn max_alloc(self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(16 << 20)
    }

    fn check(self, width: u32, height: u32, path: &Path) -> Result<(), PixelError> {
        if width as u64 * height as u64 > self.max_pixels {
            return Err(PixelError::TooLarge { path: path.to_path_buf(), width, height, limit: self.max_pixels });
        }
        Ok(())
    }

    fn image_limits(self) -> image::Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut l = image::Limits::default();
        l.max_image_width = Some(side);
        l.max_image_height = Some(side);
        l.max_alloc = Some(self.max_alloc());
        l
    }
}

impl PixelError {
    pub fn path(&self) -> &Path {
        match self {
            PixelError::Io { path, .. }
            | PixelError::Empty { path }
            | PixelError::NotImage { path }
            | PixelError::Corrupt { path, .. }
            | PixelError::TooLarge { path, .. }
            | PixelError::FileTooLarge { path, .. }
            | PixelError::NotAFile { path } => path,
        }
    }

    /// The problem without the path, for reports that list the path separately.
    pub fn reason(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.path().display());
        full.strip_prefix(&prefix).unwrap_or(&full).to_string()
    }
}

/// Resize-then-crop geometry, as torchvision's `Resize(resize)` + `CenterCrop(crop)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub resize: u32,
    pub crop: u32,
    pub filter: Filter,
}

/// Decodes a file to 8-bit RGB, whatever its format (JPEG, PNG, GIF, BMP, WebP), colour
/// type (grey, RGBA, CMYK, 16-bit) or EXIF orientation, within the default [`Limits`].
pub fn decode(path: &Path) -> Result<RgbImage, PixelError> {
    let bytes = read_file(path, Limits::default())?;
    decode_bytes(&bytes, path, Limits::default())
}

/// An image file's bytes, read only once its size (from the metadata) is within
/// `limits.max_file_size` and its first bytes are those of an image format: a video or an
/// archive beside the photos costs a `stat` and a few bytes, not its size in memory.
pub fn read_file(path: &Path, limits: Limits) -> Result<Vec<u8>, PixelError> {
    use std::io::Read;
    let io = |source| PixelError::Io { path: path.to_path_buf(), source };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PixelError::NotAFile { path: path.to_path_buf() });
    }
    if meta.len() > limits.max_file_size {
        return Err(PixelError::FileTooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: limits.max_file_size,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut f).take(32).read_to_end(&mut bytes).map_err(io)?;
    if bytes.is_empty() {
        return Err(PixelError::Empty { path: path.to_path_buf() });
    }
    if image::guess_format(&bytes).is_err() {
        return Err(PixelError::NotImage { path: path.to_path_buf() });
    }
    // The file may have grown since the stat: read no more than the limit allows.
    f.take(limits.max_file_size.saturating_add(1) - bytes.len() as u64).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limits.max_file_size {
        return Err(PixelError::FileTooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: limits.max_file_size,
        });
    }
    Ok(bytes)
}

/// The width and height an image's header claims, read without decoding any pixel.
pub fn dimensions(bytes: &[u8], path: &Path) -> Result<(u32, u32), PixelError> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| PixelError::Io { path: path.to_path_buf(), source })?;
    if reader.format().is_none() {
        return Err(PixelError::NotImage { path: path.to_path_buf() });
    }
    reader.into_dimensions().map_err(|e| PixelError::Corrupt { path: path.to_path_buf(), reason: e.to_string() })
}

/// As [`decode`], from bytes already read; `path` names the source in errors. The header's
/// size is checked against `limits` before anything is decoded.
pub fn decode_bytes(bytes: &[u8], path: &Path, limits: Limits) -> Result<RgbImage, PixelError> {
    if bytes.is_empty() {
        return Err(PixelError::Empty { path: path.to_path_buf() });
    }
    if let Some(stripped) = without_icc_bomb(bytes) {
        eprintln!(
            "warning: {}: its ICC colour profile inflates past {} MB; ignored (retrain does not use it)",
            path.display(),
            MAX_METADATA >> 20
        );
        return decode_bytes(&stripped, path, limits);
    }
    let corrupt = |e: image::ImageError| PixelError::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| PixelError::Io { path: path.to_path_buf(), source })?;
    if reader.format().is_none() {
        return Err(PixelError::NotImage { path: path.to_path_buf() });
    }
    // The decoders refuse a header beyond these themselves, but name no limit the user can
    // change: the header is read first and checked here too.
    reader.limits(limits.image_limits());
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => match dimensions(bytes, path) {
            Ok((w, h)) => limits.check(w, h, path).err().unwrap_or_else(|| corrupt(e)),
            Err(_) => corrupt(e),
        },
        e => corrupt(e),
    })?;
    let (w, h) = decoder.dimensions();
    limits.check(w, h, path)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(PixelError::Corrupt { path: path.to_path_buf(), reason: "zero-sized image".into() });
    }
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

/// Decompressed metadata kept at most, as Pillow's `ImageFile.SAFEBLOCK`-sized text limit.
const MAX_METADATA: usize = 1 << 20;

/// A PNG whose ICC profile (the one compressed metadata the decoder inflates whole, up to its
/// pixel allocation limit) inflates past [`MAX_METADATA`], without that chunk; `None` for any
/// other file. retrain does not colour-manage, so the profile is never needed.
fn without_icc_bomb(bytes: &[u8]) -> Option<Vec<u8>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return None;
    }
    let mut at = SIGNATURE.len();
    let mut drop = None;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let end = at.checked_add(12)?.checked_add(len)?;
        let kind = &bytes[at + 4..at + 8];
        if end > bytes.len() || kind == b"IDAT" {
            break;
        }
        if kind == b"iCCP" {
            let data = &bytes[at + 8..at + 8 + len];
            // Profile name, NUL, compression method, then the zlib stream.
            let z = data.iter().position(|&b| b == 0).map(|i| i + 2).filter(|&i| i <= data.len())?;
            if let Err(e) = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&data[z..], MAX_METADATA) {
                if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
                    drop = Some(at..end);
                }
            }
            break;
        }
        at = end;
    }
    let range = drop?;
    let mut out = Vec::with_capacity(bytes.len() - range.len());
    out.extend_from_slice(&bytes[..range.start]);
    out.extend_from_slice(&bytes[range.end..]);
    Some(out)
}

/// How much smaller than the source a JPEG may be decoded in the DCT domain (1/2, 1/4, 1/8)
/// while its shorter side stays at least twice `resize`: the antialiased resize that follows
/// then still averages over ≥ 2 source pixels per output pixel, so the result is close to a
/// full decode; smaller photos (and every test photo here) are decoded in full, bit-exact.
fn dct_scale(w: u32, h: u32, resize: u32) -> u32 {
    let short = w.min(h);
    [8, 4, 2].into_iter().find(|s| short / s >= 2 * resize).unwrap_or(1)
}

/// As [`decode_bytes`], but a large JPEG is decoded directly at a fraction of its size (the
/// IDCT computes fewer pixels; entropy decoding, which scaling cannot skip, still dominates),
/// and the resize after it is cheaper too.
pub fn decode_for(bytes: &[u8], path: &Path, g: Geometry, limits: Limits) -> Result<RgbImage, PixelError> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut d = jpeg_decoder::Decoder::new(bytes);
        d.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc()).unwrap_or(usize::MAX));
        if let (Ok(()), Some(info)) = (d.read_info(), d.info()) {
            limits.check(info.width as u32, info.height as u32, path)?;
            let s = dct_scale(info.width as u32, info.height as u32, g.resize);
            if s > 1 && info.pixel_format == jpeg_decoder::PixelFormat::RGB24 {
                if let Some(img) = decode_scaled(d, bytes, s) {
                    return Ok(img);
                }
            }
        }
    }
    decode_bytes(bytes, path, limits)
}

fn decode_scaled(mut d: jpeg_decoder::Decoder<&[u8]>, bytes: &[u8], s: u32) -> Option<RgbImage> {
    let info = d.info()?;
    let (w, h) = d.scale((info.width as u32 / s) as u16, (info.height as u32 / s) as u16).ok()?;
    let px = d.decode().ok()?;
    let mut img = DynamicImage::ImageRgb8(RgbImage::from_raw(w as u32, h as u32, px)?);
    // EXIF orientation, read by the image crate from the same bytes.
    let orientation = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_decoder().ok())
        .and_then(|mut dec| dec.orientation().ok())
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    img.apply_orientation(orientation);
    Some(img.into_rgb8())
}

/// The resized size for a shorter side of `resize`: the longer side scaled and rounded
/// half-to-even, as torchvision computes it for the reference logits (451×300 → 385×256,
/// 773×512 → 386×256).
fn resized_size(w: u32, h: u32, resize: u32) -> (u64, u64) {
    // u64: a 1-pixel-high strip scaled to a shorter side of `resize` has a longer side far
    // beyond u32 (only the crop window of it is ever computed).
    let scale = |long: u32, short: u32| {
        let num = resize as u64 * long as u64;
        let (q, r) = (num / short as u64, num % short as u64);
        let up = 2 * r > short as u64 || (2 * r == short as u64 && q % 2 == 1);
        q + up as u64
    };
    if w <= h {
        (resize as u64, scale(h, w))
    } else {
        (scale(w, h), resize as u64)
    }
}

/// torchvision's CenterCrop offset: `int(round((size - crop) / 2))`, with Python's
/// round-half-to-even.
fn crop_offset(size: u64, crop: u32) -> u64 {
    let twice = size.saturating_sub(crop as u64);
    let (q, r) = (twice / 2, twice % 2);
    if r == 1 && q % 2 == 1 {
        q + 1
    } else {
        q
    }
}

/// Resizes the shorter side to `g.resize` with Pillow's antialiased `g.filter`, then takes the center `g.crop`² square. Returns `crop*crop*3` RGB bytes (HWC).
pub fn prepare(img: &RgbImage, g: Geometry) -> Vec<u8> {
    let (w, h) = resized_size(img.width(), img.height(), g.resize);
    let (left, top) = (crop_offset(w, g.crop), crop_offset(h, g.crop));
    let c = g.crop as usize;
    // Only the crop window is resampled; images smaller than the crop are zero-padded, as
    // CenterCrop does.
    let (cw, ch) = (c.min(w as usize), c.min(h as usize));
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let win = resize_window_rgb8(
        img.as_raw(),
        iw,
        ih,
        w as usize,
        h as usize,
        g.filter,
        (left as usize, top as usize, cw, ch),
    );
    if cw == c && ch == c {
        return win;
    }
    let mut out = vec![0u8; c * c * 3];
    let (pad_x, pad_y) = ((c - cw) / 2, (c - ch) / 2);
    for y in 0..ch {
        let d = ((y + pad_y) * c + pad_x) * 3;
        out[d..d + cw * 3].copy_from_slice(&win[y * cw * 3..(y + 1) * cw * 3]);
    }
    out
}

/// Decodes and prepares one file.
pub fn load(path: &Path, g: Geometry, limits: Limits) -> Result<Vec<u8>, PixelError> {
    Ok(prepare(&decode_for(&read_file(path, limits)?, path, g, limits)?, g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared").join(rel)
    }

    #[test]
    fn large_jpegs_decode_in_the_dct_domain_close_to_a_full_decode() {
        assert_eq!(dct_scale(768, 576, 256), 1);
        assert_eq!(dct_scale(4032, 3024, 256), 4);
        assert_eq!(dct_scale(2048, 1100, 256), 2);
        // A 2304×1728 JPEG (dog.jpg ×3) is decoded at 1/2; after resize + crop its pixels stay
        // within a few levels of the full decode's.
        let dog = decode(&shared("images/dog.jpg")).unwrap();
        let big = image::imageops::resize(&dog, 2304, 1728, image::imageops::FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&big).unwrap();
        let g = Geometry { resize: 256, crop: 224, filter: Filter::Bilinear };
        let p = Path::new("big.jpg");
        let fast = prepare(&decode_for(&jpeg, p, g, Limits::default()).unwrap(), g);
        let full = prepare(&decode_bytes(&jpeg, p, Limits::default()).unwrap(), g);
        let mean = fast.iter().zip(&full).map(|(a, b)| (*a as f64 - *b as f64).abs()).sum::<f64>() / fast.len() as f64;
        assert!(mean < 2.0, "mean |Δ| {mean}");
        assert_ne!(fast, full, "the scaled path was not taken");
    }

    #[test]
    fn torchvision_geometry() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(375, 500, 256), (256, 341));
        assert_eq!(resized_size(451, 300, 256), (385, 256));
        assert_eq!(resized_size(773, 512, 256), (386, 256));
        assert_eq!(crop_offset(341, 224), 58); // 58.5 rounds to even
        assert_eq!(crop_offset(343, 224), 60); // 59.5 rounds to even
        assert_eq!(crop_offset(256, 224), 16);
    }

    #[test]
    fn decodes_png_and_jpeg_to_a_crop() {
        for f in ["images/chelsea.png", "images/dog.jpg"] {
            let g = Geometry { resize: 256, crop: 224, filter: Filter::Bilinear };
            let px = load(&shared(f), g, Limits::default()).unwrap();
            assert_eq!(px.len(), 224 * 224 * 3);
            let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
            assert!(mean > 20.0 && mean < 235.0, "{f}: mean {mean}");
        }
    }

    #[test]
    fn colour_types_become_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let grey = image::GrayImage::from_fn(40, 30, |x, _| image::Luma([(x * 6) as u8]));
        let p = dir.path().join("grey.png");
        grey.save(&p).unwrap();
        let rgb = decode(&p).unwrap();
        assert_eq!(rgb.get_pixel(10, 5).0, [60, 60, 60]);

        let rgba = image::RgbaImage::from_pixel(8, 8, image::Rgba([200, 100, 50, 10]));
        let p = dir.path().join("rgba.png");
        rgba.save(&p).unwrap();
        assert_eq!(decode(&p).unwrap().get_pixel(0, 0).0, [200, 100, 50]);

        let deep = image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(8, 8, image::Rgb([65535u16, 0, 32896]));
        let p = dir.path().join("deep.png");
        deep.save(&p).unwrap();
        assert_eq!(decode(&p).unwrap().get_pixel(0, 0).0, [255, 0, 128]);

        let bmp = dir.path().join("x.bmp");
        image::RgbImage::from_pixel(5, 7, image::Rgb([1, 2, 3])).save(&bmp).unwrap();
        assert_eq!(decode(&bmp).unwrap().dimensions(), (5, 7));
        let webp = dir.path().join("x.webp");
        image::RgbImage::from_pixel(5, 7, image::Rgb([1, 2, 3])).save(&webp).unwrap();
        assert_eq!(decode(&webp).unwrap().dimensions(), (5, 7));
    }

    #[test]
    fn bad_files_are_typed_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(decode(&empty), Err(PixelError::Empty { .. })));

        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, b"just some text, not pixels").unwrap();
        let e = decode(&text).unwrap_err();
        assert!(matches!(e, PixelError::NotImage { .. }));
        assert!(e.to_string().contains("notes.jpg"));

        let full = std::fs::read(shared("images/dog.jpg")).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &full[..full.len() / 3]).unwrap();
        // A truncated JPEG either fails or decodes what is there; it never panics.
        if let Err(e) = decode(&cut) {
            assert!(e.to_string().contains("cut.jpg"));
        }
        let cut_png = dir.path().join("cut.png");
        let png = std::fs::read(shared("images/chelsea.png")).unwrap();
        std::fs::write(&cut_png, &png[..png.len() / 2]).unwrap();
        assert!(matches!(decode(&cut_png), Err(PixelError::Corrupt { .. })));
    }

    /// A small real image of `format`, with the size in its header replaced by `w`×`h`.
    pub(crate) fn lying(format: image::ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 15) as u8, (y * 20) as u8, 99]));
        let mut b = std::io::Cursor::new(Vec::new());
        img.write_to(&mut b, format).unwrap();
        let mut b = b.into_inner();
        match format {
            image::ImageFormat::Png => {
                b[16..20].copy_from_slice(&w.to_be_bytes());
                b[20..24].copy_from_slice(&h.to_be_bytes());
                let crc = crc32fast::hash(&b[12..29]);
                b[29..33].copy_from_slice(&crc.to_be_bytes());
            }
            image::ImageFormat::Jpeg => {
                let sof = b.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
                b[sof + 5..sof + 7].copy_from_slice(&(h as u16).to_be_bytes());
                b[sof + 7..sof + 9].copy_from_slice(&(w as u16).to_be_bytes());
            }
            image::ImageFormat::Gif => {
                b[6..8].copy_from_slice(&(w as u16).to_le_bytes());
                b[8..10].copy_from_slice(&(h as u16).to_le_bytes());
            }
            image::ImageFormat::Bmp => {
                b[18..22].copy_from_slice(&(w as i32).to_le_bytes());
                b[22..26].copy_from_slice(&(h as i32).to_le_bytes());
            }
            image::ImageFormat::WebP => {
                assert_eq!(&b[12..16], b"VP8L");
                let old = u32::from_le_bytes(b[21..25].try_into().unwrap());
                let v = (old & 0xF000_0000) | (w - 1) | ((h - 1) << 14);
                b[21..25].copy_from_slice(&v.to_le_bytes());
            }
            _ => unreachable!(),
        }
        b
    }

    #[test]
    fn headers_claiming_too_many_pixels_are_refused_before_decoding() {
        use image::ImageFormat as F;
        let g = Geometry { resize: 256, crop: 224, filter: Filter::Bilinear };
        let cases = [
            (F::Jpeg, 65000, 65000, "4.2 G"),
            (F::Png, 30000, 30000, "900.0 M"),
            (F::Gif, 65000, 65000, "4.2 G"),
            (F::Bmp, 20000, 20000, "400.0 M"),
            (F::WebP, 16000, 16000, "256.0 M"),
        ];
        for (format, w, h, giga) in cases {
            let bytes = lying(format, w, h);
            let p = Path::new("lying.img");
            assert_eq!(dimensions(&bytes, p).unwrap(), (w, h), "{format:?}");
            let t = std::time::Instant::now();
            for r in [decode_bytes(&bytes, p, Limits::default()), decode_for(&bytes, p, g, Limits::default())] {
                let e = r.unwrap_err();
                assert!(matches!(e, PixelError::TooLarge { .. }), "{format:?}: {e}");
                let want =
                    format!("lying.img: image too large: {w}×{h} = {giga} pixels (limit 178956970, --max-pixels)");
                assert_eq!(e.to_string(), want);
            }
            assert!(t.elapsed().as_millis() < 500, "{format:?} took {:?}", t.elapsed());
        }
        // A lower limit refuses a real image; the default takes it.
        let real = lying(F::Png, 16, 12);
        assert!(matches!(
            decode_bytes(&real, Path::new("x"), Limits { max_pixels: 100, ..Limits::default() }),
            Err(PixelError::TooLarge { .. })
        ));
        assert_eq!(decode_bytes(&real, Path::new("x"), Limits::default()).unwrap().dimensions(), (16, 12));
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 2x1 JPEG with orientation 6 (rotate 90° clockwise) must come out 1x2.
        let dir = tempfile::tempdir().unwrap();
        let img =
            image::RgbImage::from_fn(
                16,
                8,
                |x, _| {
                    if x < 8 {
                        image::Rgb([255, 0, 0])
                    } else {
                        image::Rgb([0, 0, 255])
                    }
                },
            );
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&img).unwrap();
        // Insert an APP1 Exif segment after SOI.
        let exif: Vec<u8> = [
            b"Exif\0\0".as_slice(),
            &[b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        let p = dir.path().join("rotated.jpg");
        std::fs::write(&p, out).unwrap();
        let d = decode(&p).unwrap();
        assert_eq!(d.dimensions(), (8, 16));
        // Rotated clockwise: the left (red) half is now on top.
        assert!(d.get_pixel(4, 2).0[0] > 200 && d.get_pixel(4, 13).0[2] > 200);
    }
}

#[cfg(test)]
mod cmyk_tests {
    use super::*;

    #[test]
    fn cmyk_jpeg_becomes_the_same_rgb_as_pil() {
        // tests/fixtures/cmyk.jpg: PIL's CMYK conversion of RGB (200, 40, 30), saved as JPEG;
        // PIL reads it back as (200, 40, 30); allow a few levels for decoder differences.
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/cmyk.jpg");
        let img = decode(&p).unwrap();
        let px = img.get_pixel(8, 8).0;
        for (got, want) in px.iter().zip([200u8, 40, 30]) {
            assert!((*got as i32 - want as i32).abs() <= 4, "{px:?}");
        }
    }
}
