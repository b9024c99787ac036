//! JPEG 2000 frames of DICOM (transfer syntaxes 1.2.840.10008.1.2.4.90/.91 and HTJ2K .201-.203)
//! decoded by OpenJPEG's Rust port directly, so that a reduced resolution can be asked for: the
//! decoder skips the finest wavelet levels (`cp_reduce`, ITU-T T.800 Annex F: each skipped level
//! halves the image), as libjpeg-turbo's DCT scaling does for JPEG.
//!
//! The codestream's main header (T.800 A.5.1 SIZ, A.6.1 COD, A.6.2 COC) is read here first: the
//! image size it declares is checked against the pixel and byte limits before the decoder
//! allocates anything, and the number of decomposition levels caps the reduction.

use std::borrow::Cow;

use jpeg2k::{DecodeParameters, Image as J2kImage};

use super::decode::{check_size, covering_denominator, DecodeOptions};
use crate::error::{Error, Result};

/// JPEG 2000 Image Compression (Lossless Only), JPEG 2000 Image Compression, and the three
/// High-Throughput JPEG 2000 syntaxes (PS3.6 A-1).
pub const SYNTAXES: [&str; 5] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// Tiles x components above this are refused before decoding: OpenJPEG keeps about 6 KB of
/// coding parameters per tile and component, and real images have a few tiles at most.
const MAX_TILE_COMPONENTS: u64 = 16384;

/// What the main header declares (T.800 A.5.1, A.6.1, A.6.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Image area `[x0, x1) x [y0, y1)` on the reference grid.
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub components: u16,
    pub tiles: u64,
    /// The fewest decomposition levels of any component (COD, or a COC overriding it).
    pub levels: u8,
}

impl Header {
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
    /// The size after skipping `r` wavelet levels (T.800 B.5: `ceil(x1 / 2^r) - ceil(x0 / 2^r)`).
    pub fn reduced(&self, r: u32) -> (usize, usize) {
        let c = |v: u32| (v as u64).div_ceil(1 << r);
        (
            (c(self.x1) - c(self.x0)) as usize,
            (c(self.y1) - c(self.y0)) as usize,
        )
    }
}

/// The codestream inside a frame: the frame itself, or the `jp2c` box of a JP2 file (some writers
/// wrap it so).
fn codestream(frame: &[u8]) -> std::result::Result<&[u8], String> {
    if frame.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        return Ok(frame);
    }
    if !frame.starts_with(&[0, 0, 0, 12, b'j', b'P', b' ', b' ']) {
        return Err("neither a JPEG 2000 codestream (SOC, SIZ) nor a JP2 file".into());
    }
    let mut pos = 0usize;
    while pos + 8 <= frame.len() {
        let len = u32::from_be_bytes(frame[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = &frame[pos + 4..pos + 8];
        let (header, len) = match len {
            0 => (8, (frame.len() - pos) as u64),
            1 if pos + 16 <= frame.len() => (
                16,
                u64::from_be_bytes(frame[pos + 8..pos + 16].try_into().unwrap()),
            ),
            _ => (8, len),
        };
        if len < header || len > (frame.len() - pos) as u64 {
            return Err(format!("JP2 box of {len} bytes does not fit the frame"));
        }
        if kind == b"jp2c" {
            return Ok(&frame[pos + header as usize..pos + len as usize]);
        }
        pos += len as usize;
    }
    Err("JP2 file without a codestream box".into())
}

/// Read SIZ, COD and every COC of the main header (up to the first tile part).
pub fn read_header(cs: &[u8]) -> std::result::Result<Header, String> {
    let be16 = |i: usize| -> std::result::Result<u16, String> {
        cs.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "main header cut short".to_string())
    };
    let be32 = |i: usize| -> std::result::Result<u32, String> {
        cs.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "main header cut short".to_string())
    };
    if be16(0)? != 0xFF4F || be16(2)? != 0xFF51 {
        return Err("no SOC and SIZ markers at the start of the codestream".into());
    }
    // SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz
    let s = 4;
    let (x1, y1, x0, y0) = (be32(s + 4)?, be32(s + 8)?, be32(s + 12)?, be32(s + 16)?);
    let (tw, th, tx0, ty0) = (be32(s + 20)?, be32(s + 24)?, be32(s + 28)?, be32(s + 32)?);
    let components = be16(s + 36)?;
    if x0 >= x1 || y0 >= y1 || tw == 0 || th == 0 || tx0 > x0 || ty0 > y0 || components == 0 {
        return Err(format!(
            "invalid SIZ: image {x0}..{x1} x {y0}..{y1}, tiles {tw}x{th} from \
             ({tx0}, {ty0}), {components} components"
        ));
    }
    let tiles = ((x1 - tx0) as u64).div_ceil(tw as u64) * ((y1 - ty0) as u64).div_ceil(th as u64);
    let mut levels: Option<u8> = None;
    let mut pos = s + be16(s)? as usize;
    loop {
        let marker = be16(pos)?;
        if marker == 0xFF90 || marker == 0xFFD9 {
            break; // SOT: the first tile part; EOC
        }
        let len = be16(pos + 2)? as usize;
        if len < 2 {
            return Err(format!("marker {marker:04X} with length {len}"));
        }
        let body = pos + 4;
        let level_at = match marker {
            0xFF52 => Some(body + 1 + 4), // COD: Scod, SGcod (4 bytes), SPcod
            // COC: Ccoc (1 byte, 2 when Csiz > 256), Scoc, SPcoc
            0xFF53 => Some(body + if components > 256 { 2 } else { 1 } + 1),
            _ => None,
        };
        if let Some(at) = level_at {
            let l = *cs.get(at).ok_or("main header cut short")?;
            levels = Some(levels.map_or(l, |m| m.min(l)));
        }
        pos += 2 + len;
    }
    let levels = levels.ok_or("no COD marker in the main header")?;
    Ok(Header {
        x0,
        y0,
        x1,
        y1,
        components,
        tiles,
        levels,
    })
}

/// A decoded frame: `spp` samples per pixel interleaved, each `bits_allocated / 8` little-endian
/// bytes (the layout dicom-pixeldata's JPEG 2000 adapter writes), and the reduction's
/// denominator `2^r`.
#[derive(Debug)]
pub struct Frame {
    pub data: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub denominator: usize,
}

/// Decode a DICOM JPEG 2000 frame of `cols` x `rows` pixels and `spp` samples, at the largest
/// reduction `2^r` (`r` at most the codestream's decomposition levels) whose size still covers
/// `opts.reduce_to`: the covering rule of JPEG's DCT scaling ([`covering_denominator`]).
pub fn decode_frame(
    name: &str,
    frame: &[u8],
    (cols, rows, spp, bits_allocated): (usize, usize, usize, u16),
    opts: &DecodeOptions,
) -> Result<Frame> {
    let bad = |why: String| Error::decode(name, format!("DICOM JPEG 2000: {why}"));
    let cs = codestream(frame).map_err(bad)?;
    let h = read_header(cs).map_err(bad)?;
    check_size(
        name,
        h.width() as u64,
        h.height() as u64,
        h.components as u64,
        bits_allocated as u64,
        opts,
    )?;
    if (h.width() as usize, h.height() as usize) != (cols, rows) {
        return Err(bad(format!(
            "the codestream is {}x{} but Columns x Rows is {cols}x{rows}",
            h.width(),
            h.height()
        )));
    }
    if (h.components as usize) < spp {
        return Err(bad(format!(
            "{} components for {spp} samples per pixel",
            h.components
        )));
    }
    if h.tiles.saturating_mul(h.components as u64) > MAX_TILE_COMPONENTS {
        return Err(bad(format!(
            "{} tiles of {} components (at most {MAX_TILE_COMPONENTS} tile components)",
            h.tiles, h.components
        )));
    }
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(Error::unsupported(
            name,
            format!("DICOM JPEG 2000 with BitsAllocated {bits_allocated}"),
        ));
    }
    let denominator = covering_denominator(opts.reduce_to, h.levels as u32, |d| {
        h.reduced(d.trailing_zeros())
    });
    let r = denominator.trailing_zeros();
    let decoded = J2kImage::from_bytes_with(cs, DecodeParameters::new().reduce(r));
    // a tile-part header may give a component fewer levels than the main header: full size then
    let (img, r) = match decoded {
        Err(_) if r > 0 => (J2kImage::from_bytes(cs), 0),
        other => (other, r),
    };
    let img = img.map_err(|e| bad(format!("OpenJPEG: {e}")))?;
    let (w, hgt) = h.reduced(r);
    let comps = img.components();
    if comps.len() < spp {
        return Err(bad(format!("{} components decoded", comps.len())));
    }
    let bytes = bits_allocated as usize / 8;
    let mut data = super::decode::try_zeroed::<u8>(name, w * hgt * spp * bytes)?;
    for (c, comp) in comps.iter().take(spp).enumerate() {
        if (comp.width() as usize, comp.height() as usize) != (w, hgt) {
            return Err(Error::unsupported(
                name,
                format!(
                    "DICOM JPEG 2000 component {c} is {}x{}, not {w}x{hgt} (subsampled)",
                    comp.width(),
                    comp.height()
                ),
            ));
        }
        let stride = spp * bytes;
        for (out, v) in data[c * bytes..].chunks_mut(stride).zip(comp.data()) {
            out[..bytes].copy_from_slice(&v.to_le_bytes()[..bytes]);
        }
    }
    Ok(Frame {
        data,
        width: w,
        height: hgt,
        denominator: 1 << r,
    })
}

/// The first frame's bytes of encapsulated pixel data, as dicom-pixeldata gathers them.
pub fn first_frame<'a>(
    obj: &'a dicom_object::DefaultDicomObject,
    name: &str,
) -> Result<Cow<'a, [u8]>> {
    use dicom_encoding::adapters::PixelDataObject;
    obj.frame_pixel_data(0)
        .ok_or_else(|| Error::decode(name, "DICOM JPEG 2000: no encapsulated frame 0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOC, SIZ (one component, one tile), COD with `levels`, a COC for component 0 with
    /// `coc_levels`, SOT.
    fn header(w: u32, h: u32, x0: u32, levels: u8, coc_levels: Option<u8>) -> Vec<u8> {
        let mut v = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for x in [w + x0, h, x0, 0, w + x0, h, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&[0, 1, 15, 1, 1]); // Csiz, Ssiz (16-bit), XRsiz, YRsiz
        v.extend_from_slice(&[0xFF, 0x52, 0, 12, 0, 0, 0, 1, 0, levels, 4, 4, 0, 1]);
        if let Some(l) = coc_levels {
            v.extend_from_slice(&[0xFF, 0x53, 0, 9, 0, 0, l, 4, 4, 0, 1]);
        }
        v.extend_from_slice(&[0xFF, 0x90, 0, 10]);
        v
    }

    #[test]
    fn main_header_gives_size_and_fewest_levels() {
        let h = read_header(&header(1841, 1955, 0, 5, None)).unwrap();
        assert_eq!(
            (h.width(), h.height(), h.levels, h.tiles),
            (1841, 1955, 5, 1)
        );
        assert_eq!(h.reduced(2), (461, 489));
        assert_eq!(
            read_header(&header(64, 64, 0, 5, Some(2))).unwrap().levels,
            2
        );
        // an image origin off zero: T.800's ceil(x1 / 2^r) - ceil(x0 / 2^r)
        let h = read_header(&header(100, 8, 3, 5, None)).unwrap();
        assert_eq!(h.reduced(1).0, 52 - 2);
        assert!(read_header(&header(64, 64, 0, 5, None)[..30]).is_err());
    }

    #[test]
    fn reduction_covers_the_target_within_the_levels() {
        let opts = |t| DecodeOptions {
            reduce_to: Some(t),
            ..Default::default()
        };
        let cs = header(1841, 1955, 0, 5, None);
        let h = read_header(&cs).unwrap();
        let pick =
            |t, levels| covering_denominator(Some(t), levels, |d| h.reduced(d.trailing_zeros()));
        assert_eq!(pick((512, 512), 5), 2); // 1/4 is 461 wide
        assert_eq!(pick((460, 488), 5), 4);
        assert_eq!(pick((58, 62), 5), 32);
        assert_eq!(pick((58, 62), 3), 8); // capped by the decomposition levels
        assert_eq!(pick((2000, 10), 5), 1);
        // the SIZ is checked against the limits before OpenJPEG sees the codestream
        let small = DecodeOptions {
            max_pixels: 1000,
            ..opts((8, 8))
        };
        let e = decode_frame("big.dcm", &cs, (1841, 1955, 1, 16), &small).unwrap_err();
        assert!(
            matches!(e, Error::TooLarge { .. }) && e.to_string().contains("big.dcm"),
            "{e}"
        );
        let e = decode_frame("odd.dcm", &cs, (1841, 1000, 1, 16), &opts((8, 8))).unwrap_err();
        assert!(e.to_string().contains("1841x1955"), "{e}");
        // a header without its tiles: OpenJPEG's error, named
        let e = decode_frame("cut.dcm", &cs, (1841, 1955, 1, 16), &opts((8, 8))).unwrap_err();
        assert!(
            matches!(e, Error::Decode { .. }) && e.to_string().contains("cut.dcm"),
            "{e}"
        );
    }
}
