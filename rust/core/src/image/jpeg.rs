//! JPEG through libjpeg-turbo's TurboJPEG API (the decoder OpenCV ships), with DCT-domain
//! down-scaling: decoding a 2048^2 radiograph at 1/4 skips most of the IDCT and colour work.

use turbojpeg::{Colorspace, Decompressor, Image as TjImage, PixelFormat, ScalingFactor};

use super::decode::{
    check_pixels, check_size, reduction_denominator, try_zeroed, ColorMode, DecodeOptions, Decoded,
};
use super::Image;
use crate::error::{Error, Result};

/// Scans a JPEG may have. A progressive JPEG has about ten; a crafted one with thousands of
/// (empty) scans would cost CPU time linear in their number (libjpeg-turbo's scan-limit guard).
pub const MAX_SCANS: u32 = 100;

/// Decode; also returns the DCT scale denominator used (1, 2, 4 or 8).
pub fn decode_jpeg(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<(Decoded, usize)> {
    let tj = |e: turbojpeg::Error| {
        let why = match e {
            // TurboJPEG reports a header without a frame (SOF) as a width of -1
            turbojpeg::Error::IntegerOverflow(_) => {
                "no valid frame header (truncated or corrupt before the image size)".to_string()
            }
            other => other.to_string(),
        };
        Error::decode(name, format!("JPEG: {why}"))
    };
    let mut dec = Decompressor::new().map_err(tj)?;
    dec.set_scan_limit(MAX_SCANS).map_err(tj)?;
    let header = dec.read_header(bytes).map_err(tj)?;
    check_pixels(
        name,
        header.width as u64,
        header.height as u64,
        opts.max_pixels,
    )?;
    if header.is_lossless {
        return Err(Error::unsupported(
            name,
            "lossless JPEG (process 14) outside DICOM",
        ));
    }
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) {
        return Err(Error::unsupported(name, "CMYK/YCCK JPEG colour space"));
    }
    let grey_source = header.colorspace == Colorspace::Gray;
    let (format, channels) = match opts.mode {
        ColorMode::Gray => (PixelFormat::GRAY, 1),
        ColorMode::Unchanged if grey_source => (PixelFormat::GRAY, 1),
        _ => (PixelFormat::RGB, 3),
    };
    let denom = reduction_denominator(header.width, header.height, opts.reduce_to);
    let scale = ScalingFactor::new(1, denom);
    let scaled = header.scaled(scale);
    let (sw, sh) = (scaled.width as u64, scaled.height as u64);
    check_size(name, sw, sh, channels as u64, 8, opts)?;
    dec.set_scaling_factor(scale).map_err(tj)?;
    let mut img = Image::<u8> {
        width: scaled.width,
        height: scaled.height,
        channels,
        data: try_zeroed(name, scaled.width * scaled.height * channels)?,
    };
    let out = TjImage {
        pixels: img.data.as_mut_slice(),
        width: scaled.width,
        pitch: scaled.width * channels,
        height: scaled.height,
        format,
    };
    dec.decompress(bytes, out).map_err(tj)?;
    Ok((Decoded::U8(img), denom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::decode;

    /// A smooth grey test card, JPEG-encoded by libjpeg-turbo itself.
    fn encoded(width: usize, height: usize) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height)
            .map(|i| ((i % width + i / width) % 256) as u8)
            .collect();
        let img = TjImage {
            pixels: pixels.as_slice(),
            width,
            pitch: width,
            height,
            format: PixelFormat::GRAY,
        };
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(92).unwrap();
        c.set_subsamp(turbojpeg::Subsamp::Gray).unwrap();
        c.compress_to_vec(img).unwrap()
    }

    #[test]
    fn reduced_decode_covers_the_target() {
        let jpg = encoded(1001, 777);
        let opts = |t| DecodeOptions {
            reduce_to: Some(t),
            ..Default::default()
        };
        let dims = |t| decode(&jpg, "t.jpg", &opts(t)).unwrap().dims();
        assert_eq!(dims((250, 194)), (251, 195, 1)); // 1/8 (126x98) is too small -> 1/4
        assert_eq!(dims((126, 98)), (126, 98, 1)); // 1/8 exactly covers
        assert_eq!(dims((1001, 777)), (1001, 777, 1));
        let full = decode(&jpg, "t.jpg", &DecodeOptions::default()).unwrap();
        let Decoded::U8(full) = full else {
            panic!("8-bit expected")
        };
        // a lossy round trip of a smooth card stays close to the source
        assert!((full.data[500 * 1001 + 500] as i32 - 1000 % 256).abs() <= 3);
    }

    #[test]
    fn truncated_and_oversized_jpegs_are_refused() {
        let jpg = encoded(64, 48);
        let e = decode(&jpg[..jpg.len() / 2], "cut.jpg", &DecodeOptions::default()).unwrap_err();
        assert!(
            matches!(e, Error::Decode { .. }) && e.to_string().contains("cut.jpg"),
            "{e}"
        );
        let limited = DecodeOptions {
            max_pixels: 64 * 48 - 1,
            ..Default::default()
        };
        let e = decode(&jpg, "big.jpg", &limited).unwrap_err();
        assert!(
            matches!(
                e,
                Error::TooLarge {
                    width: 64,
                    height: 48,
                    ..
                }
            ),
            "{e}"
        );
    }
}
