//! PNG (8- and 16-bit, grey, grey+alpha, RGB, RGBA, palette) through the `png` crate.
//! Palette and low bit depths are expanded; alpha is dropped (radiographs carry none).

use std::io::Cursor;

use png::{BitDepth, ColorType, Transformations};

use super::decode::{check_pixels, DecodeOptions, Decoded};
use super::Image;
use crate::error::{Error, Result};

pub fn decode_png(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
    let err = |e: png::DecodingError| Error::decode(name, format!("PNG: {e}"));
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(Transformations::EXPAND);
    let info = dec.read_header_info().map_err(err)?;
    check_pixels(name, info.width as u64, info.height as u64, opts.max_pixels)?;
    let mut reader = dec.read_info().map_err(err)?;
    let (color, depth) = reader.output_color_type();
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::decode(name, "PNG: image too large for this platform"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    buf.truncate(frame.buffer_size());
    let (src_ch, keep) = match color {
        ColorType::Grayscale => (1, 1),
        ColorType::GrayscaleAlpha => (2, 1),
        ColorType::Rgb => (3, 3),
        ColorType::Rgba => (4, 3),
        ColorType::Indexed => return Err(Error::decode(name, "PNG: palette was not expanded")),
    };
    match depth {
        BitDepth::Sixteen => {
            let samples: Vec<u16> = buf
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            let data = drop_alpha(samples, src_ch, keep);
            Ok(Decoded::U16(Image {
                width: w,
                height: h,
                channels: keep,
                data,
            }))
        }
        BitDepth::Eight => {
            let data = drop_alpha(buf, src_ch, keep);
            Ok(Decoded::U8(Image {
                width: w,
                height: h,
                channels: keep,
                data,
            }))
        }
        d => Err(Error::unsupported(
            name,
            format!("PNG bit depth {d:?} after expansion"),
        )),
    }
}

fn drop_alpha<T: Copy>(samples: Vec<T>, src_ch: usize, keep: usize) -> Vec<T> {
    if src_ch == keep {
        return samples;
    }
    samples
        .chunks_exact(src_ch)
        .flat_map(|p| p[..keep].iter().copied())
        .collect()
}
