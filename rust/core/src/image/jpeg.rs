//! JPEG through libjpeg-turbo's TurboJPEG API (the decoder OpenCV ships), with DCT-domain
//! down-scaling: decoding a 2048^2 radiograph at 1/4 skips most of the IDCT and colour work.

use turbojpeg::{Colorspace, Decompressor, Image as TjImage, PixelFormat, ScalingFactor};

use super::decode::{check_pixels, reduction_denominator, ColorMode, DecodeOptions, Decoded};
use super::Image;
use crate::error::{Error, Result};

pub fn decode_jpeg(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
    let tj = |e: turbojpeg::Error| Error::decode(name, format!("JPEG: {e}"));
    let mut dec = Decompressor::new().map_err(tj)?;
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
    let grey_source = header.colorspace == Colorspace::Gray;
    let (format, channels) = match opts.mode {
        ColorMode::Gray => (PixelFormat::GRAY, 1),
        ColorMode::Unchanged if grey_source => (PixelFormat::GRAY, 1),
        _ => (PixelFormat::RGB, 3),
    };
    if matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK) && channels == 3 {
        return Err(Error::unsupported(name, "CMYK/YCCK JPEG colour space"));
    }
    let denom = reduction_denominator(header.width, header.height, opts.reduce_to);
    let scale = ScalingFactor::new(1, denom);
    let scaled = header.scaled(scale);
    dec.set_scaling_factor(scale).map_err(tj)?;
    let mut img = Image::<u8>::new(scaled.width, scaled.height, channels);
    let out = TjImage {
        pixels: img.data.as_mut_slice(),
        width: scaled.width,
        pitch: scaled.width * channels,
        height: scaled.height,
        format,
    };
    dec.decompress(bytes, out).map_err(tj)?;
    Ok(Decoded::U8(img))
}
