//! Decoding entry point: sniff the format from the bytes, check the declared size against a pixel
//! limit *before* allocating, and hand over to the format's decoder (`jpeg`, `png`, `dicom`).

use std::path::Path;

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// Default pixel limit: a header declaring more than 2^28 pixels is refused before any allocation.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 28;

/// Default limit on the decoded samples' bytes (1 GiB): a 16384 x 16384 16-bit RGBA PNG (2 GiB
/// decoded, within the pixel limit) is refused from its header, in bounded memory.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A decoded image: 8-bit, or 16-bit for 16-bit PNG and DICOM with more than 8 bits stored.
#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    U8(Image<u8>),
    U16(Image<u16>),
}

/// A borrowed [`Decoded`]: a decoded image, or pixels read in place (the pre-decoded cache).
#[derive(Clone, Copy, Debug)]
pub enum DecodedRef<'a> {
    U8(ImageRef<'a, u8>),
    U16(ImageRef<'a, u16>),
}

impl Decoded {
    pub fn dims(&self) -> (usize, usize, usize) {
        match self {
            Decoded::U8(i) => (i.width, i.height, i.channels),
            Decoded::U16(i) => (i.width, i.height, i.channels),
        }
    }

    pub fn view(&self) -> DecodedRef<'_> {
        match self {
            Decoded::U8(i) => DecodedRef::U8(i.view()),
            Decoded::U16(i) => DecodedRef::U16(i.view()),
        }
    }
}

/// Which channels to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// Grey stays grey (HxW), colour stays colour (HxWx3, RGB order); alpha is dropped.
    Unchanged,
    /// Always grey: JPEG decodes the luma plane directly (as `cv2.IMREAD_GRAYSCALE`); other colour
    /// inputs are converted with BT.601 weights (as `cv2.cvtColor(..., COLOR_RGB2GRAY)`).
    Gray,
    /// Always RGB; grey is replicated.
    Rgb,
}

#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// Target `(width, height)`: JPEG decodes at the smallest 1/2, 1/4 or 1/8 scale that stays
    /// at least this large (DCT scaling); DICOM JPEG 2000 at the smallest 1/2^r that does, `r` at
    /// most its decomposition levels (skipped wavelet levels). Other formats decode at full size.
    pub reduce_to: Option<(usize, usize)>,
    pub mode: ColorMode,
    pub max_pixels: u64,
    /// Limit on the bytes the decoded samples take (before any conversion).
    pub max_bytes: u64,
    /// DICOM grey values stretched from the range their stored bits allow (after the rescale)
    /// to the output type's full range; off: the stored values, as pydicom returns them.
    pub full_range: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            reduce_to: None,
            mode: ColorMode::Unchanged,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: DEFAULT_MAX_BYTES,
            full_range: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Dicom,
}

/// Detect the format from magic bytes (DICOM: "DICM" after the 128-byte preamble).
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        Some(Format::Dicom)
    } else {
        None
    }
}

/// Decode an in-memory image; `name` is used in error messages.
pub fn decode(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
    decode_scaled(bytes, name, opts).map(|(d, _)| d)
}

/// Decode, and say by which power of two the decoder shrank the image (1 = full size): decoded
/// pixel `i` covers source pixels `[i * d, (i + 1) * d)`.
pub fn decode_scaled(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<(Decoded, usize)> {
    if bytes.is_empty() {
        return Err(Error::decode(name, "the input is empty (0 bytes)"));
    }
    let Some(format) = sniff(bytes) else {
        // the file's bytes are never quoted: a path may point anywhere
        return Err(Error::unsupported(name, UNKNOWN_FORMAT));
    };
    let (decoded, denom) = guarded(name, || match format {
        Format::Jpeg => super::jpeg::decode_jpeg(bytes, name, opts),
        Format::Png => Ok((super::png::decode_png(bytes, name, opts)?, 1)),
        Format::Dicom => super::dicom::decode_dicom(bytes, name, opts),
    })?;
    Ok((apply_mode(decoded, opts.mode), denom))
}

thread_local! {
    /// How many `guarded` calls this thread is inside: their panics are reported as errors, so
    /// the panic hook stays silent for them.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Install (once) a panic hook that is silent inside `guarded` and defers to the previous hook
/// everywhere else.
fn quiet_panics_in_guard() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) == 0 {
                previous(info);
            }
        }));
    });
}

const UNKNOWN_FORMAT: &str =
    "format (not JPEG, PNG or DICOM with the 128-byte preamble, by its first bytes)";

/// Run a decoder; a panic inside it (a third-party decoder's bug on a malformed file) becomes a
/// `Decode` error naming the file, so it is handled like any other bad file and never crosses
/// into Python.
fn guarded<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    without_panics(f).unwrap_or_else(|why| {
        Err(Error::decode(
            name,
            format!("the decoder failed on malformed data ({why})"),
        ))
    })
}

/// Run third-party parsing code on untrusted bytes: its result, or the message of a panic inside
/// it (caught quietly, so it never reaches Python or the terminal).
pub(crate) fn without_panics<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    quiet_panics_in_guard();
    GUARDED.with(|g| g.set(g.get() + 1));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    caught.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into())
    })
}

/// Read and decode a file (or an object store URL, see [`crate::storage`]); errors name the path.
pub fn decode_file(path: &Path, opts: &DecodeOptions) -> Result<Decoded> {
    decode_file_scaled(path, opts).map(|(d, _)| d)
}

/// [`decode_file`] with the decoder's scale denominator, as [`decode_scaled`].
pub fn decode_file_scaled(path: &Path, opts: &DecodeOptions) -> Result<(Decoded, usize)> {
    let name = path.display().to_string();
    let limit = max_file_bytes(opts.max_bytes);
    let bytes = crate::storage::read_bytes(path, limit, |p| read_image_file(p, &name, limit))?;
    decode_scaled(&bytes, &name, opts)
}

/// The largest image file read: the decoded-bytes limit plus room for headers (an uncompressed
/// DICOM is about as large as its pixels), at least 64 MiB.
pub fn max_file_bytes(max_bytes: u64) -> u64 {
    max_bytes.saturating_add(16 << 20).max(64 << 20)
}

/// Read an image file: only a regular file (a FIFO, device or directory is refused before it is
/// opened, so a read cannot block forever on one), no larger than `limit` bytes, and with the
/// magic bytes of a supported format before the rest is read.
pub fn read_image_file(path: &Path, name: &str, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;

    let io = |source: std::io::Error| Error::Io {
        name: name.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(Error::decode(
            name,
            format!("{kind}; only regular files are read"),
        ));
    }
    if meta.len() > limit {
        return Err(Error::decode(
            name,
            format!(
                "the file has {} bytes, more than the {limit} read for an image (raise max_bytes)",
                meta.len()
            ),
        ));
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| Error::decode(name, "not enough memory to read the file"))?;
    let mut head = (&mut file).take(132);
    head.read_to_end(&mut bytes).map_err(io)?;
    if bytes.is_empty() {
        return Err(Error::decode(name, "the input is empty (0 bytes)"));
    }
    if sniff(&bytes).is_none() {
        return Err(Error::unsupported(name, UNKNOWN_FORMAT));
    }
    // the size was checked; a file that grew since is cut at the limit
    file.take(limit - bytes.len() as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Refuse a declared size above the limit before anything is allocated.
pub(crate) fn check_pixels(name: &str, width: u64, height: u64, limit: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::decode(
            name,
            format!("the header declares an empty image ({width}x{height})"),
        ));
    }
    let pixels = width.saturating_mul(height);
    if pixels > limit {
        return Err(Error::TooLarge {
            name: name.to_string(),
            width,
            height,
            pixels,
            limit,
        });
    }
    Ok(())
}

/// Refuse a declared size above the pixel limit, or whose samples (`channels` of `bits` bits per
/// pixel, as the decoder will produce them) would take more than the byte limit, before anything
/// is allocated.
pub(crate) fn check_size(
    name: &str,
    width: u64,
    height: u64,
    channels: u64,
    bits: u64,
    opts: &DecodeOptions,
) -> Result<()> {
    check_pixels(name, width, height, opts.max_pixels)?;
    let bytes = width
        .saturating_mul(height)
        .saturating_mul(channels)
        .saturating_mul(bits.div_ceil(8));
    if bytes > opts.max_bytes {
        return Err(Error::TooManyBytes {
            name: name.to_string(),
            width,
            height,
            channels,
            bits,
            bytes,
            limit: opts.max_bytes,
        });
    }
    Ok(())
}

/// A zeroed buffer of `len` samples, or an error instead of an abort when memory runs out.
pub(crate) fn try_zeroed<T: Clone + Default>(name: &str, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::decode(
            name,
            format!("not enough memory for the decoded image ({len} samples)"),
        )
    })?;
    v.resize(len, T::default());
    Ok(v)
}

fn apply_mode(d: Decoded, mode: ColorMode) -> Decoded {
    match d {
        Decoded::U8(i) => Decoded::U8(convert_channels(i, mode)),
        Decoded::U16(i) => Decoded::U16(convert_channels(i, mode)),
    }
}

fn convert_channels<T: Sample>(img: Image<T>, mode: ColorMode) -> Image<T> {
    match (mode, img.channels) {
        (ColorMode::Gray, 3) => rgb_to_gray(&img),
        (ColorMode::Rgb, 1) => {
            let mut data = Vec::with_capacity(img.data.len() * 3);
            for &v in &img.data {
                data.extend_from_slice(&[v, v, v]);
            }
            Image {
                channels: 3,
                data,
                ..img
            }
        }
        _ => img,
    }
}

/// BT.601 luma with OpenCV's fixed-point weights (R 4899, G 9617, B 1868, 14 bits).
fn rgb_to_gray<T: Sample>(img: &Image<T>) -> Image<T> {
    let data = img
        .data
        .chunks_exact(3)
        .map(|p| {
            let y = p[0].to_usize() * 4899 + p[1].to_usize() * 9617 + p[2].to_usize() * 1868;
            T::from_usize_sat((y + (1 << 13)) >> 14)
        })
        .collect();
    Image {
        width: img.width,
        height: img.height,
        channels: 1,
        data,
    }
}

/// The largest DCT scale denominator (1, 2, 4 or 8) whose output stays at least `target`.
pub fn reduction_denominator(width: usize, height: usize, target: Option<(usize, usize)>) -> usize {
    covering_denominator(target, 3, |d| (width.div_ceil(d), height.div_ceil(d)))
}

/// The covering rule of every reduced decode (JPEG's DCT scaling, JPEG 2000's skipped wavelet
/// levels): the largest denominator `d = 2^k`, `1 <= k <= max_log2`, whose decoded size
/// `size(d)` is at least `target` in both width and height; 1 (full size) when none is, or when
/// there is no target.
pub fn covering_denominator(
    target: Option<(usize, usize)>,
    max_log2: u32,
    size: impl Fn(usize) -> (usize, usize),
) -> usize {
    let Some((tw, th)) = target else { return 1 };
    (1..=max_log2.min(usize::BITS - 2))
        .rev()
        .map(|k| 1usize << k)
        .find(|&d| {
            let (w, h) = size(d);
            w >= tw && h >= th
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denominator_stays_at_least_target() {
        assert_eq!(reduction_denominator(2048, 2048, Some((512, 512))), 4);
        assert_eq!(reduction_denominator(2048, 2048, Some((513, 512))), 2);
        assert_eq!(reduction_denominator(1955, 1841, Some((224, 224))), 8);
        assert_eq!(reduction_denominator(100, 100, Some((200, 200))), 1);
        assert_eq!(reduction_denominator(100, 100, None), 1);
    }

    #[test]
    fn empty_and_unknown_inputs_are_named() {
        let e = decode(&[], "x.jpg", &DecodeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.jpg") && e.contains("empty"), "{e}");
        let e = decode(b"GIF89a....", "a.gif", &DecodeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.gif") && e.contains("unsupported"), "{e}");
    }

    #[test]
    fn gray_conversion_matches_bt601_fixed_point() {
        let img = Image {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![255u8, 0, 0, 10, 200, 30],
        };
        let g = rgb_to_gray(&img);
        // as cv2.cvtColor(RGB2GRAY): (255*4899 + 8192) >> 14 = 76; (10*4899 + 200*9617 + 30*1868 + 8192) >> 14 = 124
        assert_eq!(g.data, vec![76, 124]);
    }
}
