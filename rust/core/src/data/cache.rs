//! The pre-decoded cache: every image of a manifest decoded once - at the size the loader decodes
//! it (the same reduced JPEG DCT scale, [`DatasetSpec::decode_options`]) - and written as raw
//! uint8 / uint16 pixels into memory-mappable shards, so that an epoch reads pixels instead of
//! entropy-decoding JPEGs. The loader reads a cached image straight from the memory map into its
//! augmentation (no copy, no decode); the pixels are those the decoder gives, so batches equal the
//! uncached ones for the same seed.
//!
//! A cache folder holds:
//! - `cache.json`: the format, the build settings (decode target, colour mode, limits), the
//!   manifest's name, record count and fingerprint (its record ids in order), written last: a
//!   folder without it is an unfinished build;
//! - `index.bin`: one [`ENTRY_BYTES`]-byte little-endian entry per record, in manifest order: the
//!   record id's key, where its pixels are (shard, offset, length), their shape and the decoder's
//!   scale denominator, the source file's size, modification time and FNV-1a 64 checksum, the
//!   CRC-32 of the pixels with what turns them into a sample (shape, type, denominator), and the
//!   CRC-32 of the entry itself;
//! - `shard-NNN.bin`: the pixels, each image 64-byte aligned.
//!
//! A cache is not trusted: opening it checks every entry (its own checksum, and against the header
//! and the other entries: shape, channels, decode limits, denominator, alignment, overlaps) and
//! refuses a damaged index naming the entry ([`validate_index`]); each read checks the pixels'
//! checksum, and pixels that fail it (or cannot be read) are decoded instead and counted, or are
//! the sample's error ([`Cache::lookup`]).
//!
//! Builds run on several threads, each appending to its own shard and to a journal of finished
//! entries (`shard-NNN.entries`, written after the pixels are flushed); a build killed part way
//! resumes from the journals, truncating each shard to its last journaled image.
//!
//! A cache may also lie in an object store (`s3://bucket/prefix`, any URL [`storage`] reads):
//! the same files as objects, built and uploaded by [`super::cache_remote`]. Opening it reads
//! `cache.json` and `index.bin`; each image's pixels are then one ranged read of its shard,
//! started when the batch is submitted ([`Cache::prefetch`]). The checks, the index and the rule
//! turning an entry's bytes into pixels are the same for both; only where the bytes come from
//! differs ([`Files`]).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::cache_remote::{self, RemoteFiles, UploadReport};
use super::manifest::{Manifest, Record};
use super::sample::{id_key, DatasetSpec};
use crate::error::{Error, Result};
use crate::image::decode::{
    decode_scaled, max_file_bytes, read_image_file, ColorMode, Decoded, DecodedRef,
};
use crate::image::{Image, ImageRef};
use crate::storage::{self, Pending};

pub const FORMAT: &str = "gradatim-cache";
/// The format's version: 2 added the checksums (a version 1 cache is refused, to be rebuilt).
pub const VERSION: u32 = 2;
/// Size of one `index.bin` entry.
pub const ENTRY_BYTES: usize = 80;
const ALIGN: u64 = 64;
const PRESENT: u32 = 1;
const WIDE: u32 = 2;
/// The bytes of an entry its own checksum covers (all but the checksum).
const SEALED: usize = ENTRY_BYTES - 4;

/// What decides a cached image's pixels: a cache is used only by a data set that decodes the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSettings {
    /// The `reduce_to` target: the smallest size the decode must still cover.
    pub decode_target: (usize, usize),
    /// "gray" or "rgb".
    pub mode: String,
    pub full_range: bool,
    pub max_pixels: u64,
    pub max_bytes: u64,
}

impl CacheSettings {
    pub fn of(spec: &DatasetSpec) -> CacheSettings {
        let o = spec.decode_options();
        CacheSettings {
            decode_target: o.reduce_to.unwrap_or((0, 0)),
            mode: match o.mode {
                ColorMode::Gray => "gray",
                ColorMode::Rgb => "rgb",
                ColorMode::Unchanged => "unchanged",
            }
            .to_string(),
            full_range: o.full_range,
            max_pixels: o.max_pixels,
            max_bytes: o.max_bytes,
        }
    }
}

/// `cache.json`, and (unfinished) the plan of a build in `build.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Header {
    format: String,
    version: u32,
    manifest: String,
    pub(crate) records: usize,
    /// FNV-1a 64 of the record ids in order, hex.
    fingerprint: String,
    settings: CacheSettings,
    /// Records whose image could not be decoded (not cached), with the reason.
    pub(crate) failed: Vec<(usize, String)>,
    pub(crate) bytes: u64,
    build_seconds: f64,
}

impl Header {
    /// The plan of a build of `spec` (what `cache.json` will hold, before the build's results).
    pub(crate) fn plan(spec: &DatasetSpec) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            manifest: spec.manifest.name.clone(),
            records: spec.manifest.len(),
            fingerprint: fingerprint(&spec.manifest),
            settings: CacheSettings::of(spec),
            failed: Vec::new(),
            bytes: 0,
            build_seconds: 0.0,
        }
    }

    /// A `cache.json` read from `name`, of the cache at `location`: refused unless of this
    /// format and version.
    pub(crate) fn parse(text: &str, name: &str, location: &str) -> Result<Header> {
        // the format and version first, so an older cache is told as such whatever else changed
        #[derive(Deserialize)]
        struct Tag {
            format: Option<String>,
            version: Option<u32>,
        }
        let tag: Tag =
            serde_json::from_str(text).map_err(|e| Error::decode(name, e.to_string()))?;
        if tag.format.as_deref() == Some(FORMAT) && tag.version.is_some_and(|v| v < VERSION) {
            return Err(Error::invalid(format!(
                "{location} holds a gradatim cache of format version {}, this gradatim reads \
                 version {VERSION} (version 2 added checksums); remove it and run `gradatim \
                 cache build` again",
                tag.version.unwrap_or(0)
            )));
        }
        if tag.format.as_deref() != Some(FORMAT) || tag.version != Some(VERSION) {
            return Err(Error::invalid(format!(
                "{location} is not a gradatim cache of version {VERSION} (format {:?}, version {:?})",
                tag.format, tag.version
            )));
        }
        serde_json::from_str(text).map_err(|e| Error::decode(name, e.to_string()))
    }

    /// Refuse to go on with the unfinished build `self` at `location` as `plan` when it is of
    /// another manifest or other settings.
    pub(crate) fn same_build(&self, plan: &Header, location: &str) -> Result<()> {
        if self.version != plan.version {
            return Err(Error::invalid(format!(
                "{location} holds an unfinished build of cache format version {}, this gradatim \
                 writes version {}; remove it or build elsewhere",
                self.version, plan.version
            )));
        }
        if self.fingerprint != plan.fingerprint || self.settings != plan.settings {
            return Err(Error::invalid(format!(
                "{location} holds an unfinished build for another manifest or other settings; \
                 remove it or build elsewhere"
            )));
        }
        Ok(())
    }

    /// What distinguishes the build of `self` from others (its manifest and settings), as text.
    pub(crate) fn identity(&self) -> String {
        format!("{} {:?}", self.fingerprint, self.settings)
    }
}

/// The message for a folder or prefix holding a build's plan but no `cache.json`.
pub(crate) fn unfinished(location: &str) -> Error {
    Error::invalid(format!(
        "{location} holds an unfinished cache build (run `gradatim cache build` again to finish \
         it)"
    ))
}

/// Check the index `index` (read from `name`) of the cache described by `header`: its size must
/// be the record count's entries, and every entry must be as written ([`validate_index`]).
pub(crate) fn check_index(index: &[u8], header: &Header, name: &str) -> Result<()> {
    let len = index.len();
    if Some(len) != header.records.checked_mul(ENTRY_BYTES) {
        return Err(Error::decode(
            name,
            format!(
                "{len} bytes, not {} entries of {ENTRY_BYTES}",
                header.records
            ),
        ));
    }
    validate_index(index, header).map_err(|why| {
        Error::decode(
            name,
            format!("{why}: a damaged cache; remove it and build it again"),
        )
    })
}

/// The channels an entry of a cache decoded in `mode` may have.
fn channels_of(mode: &str) -> std::ops::RangeInclusive<u32> {
    match mode {
        "gray" => 1..=1,
        "rgb" => 3..=3,
        _ => 1..=4,
    }
}

/// Every entry of `index` (a whole number of entries) checked against its own checksum, the
/// header and the other entries, without trusting any of its fields: the first entry found
/// damaged, and why (a message naming it). A present entry's shape must be 1 to 4 channels as the colour mode says
/// and within the decode limits, its length the shape's bytes, its denominator a power of two
/// that the decode target allows, its offset aligned, its bytes overlapping no other entry's;
/// an absent entry must be one of the header's failed records, and the lengths must add up to
/// the header's byte count. (Whether the bytes are in the shard, and are the pixels written, is
/// checked when they are read: the checksum.)
pub(crate) fn validate_index(index: &[u8], header: &Header) -> std::result::Result<(), String> {
    let bad = |i: usize, why: String| format!("entry {i} (record {i} of the manifest): {why}");
    let settings = &header.settings;
    let failed: HashSet<usize> = header.failed.iter().map(|(i, _)| *i).collect();
    let channels = channels_of(&settings.mode);
    let (tw, th) = settings.decode_target;
    let mut placed: Vec<(u32, u64, u64, usize)> = Vec::new();
    let mut total: u64 = 0;
    for (i, b) in index.chunks_exact(ENTRY_BYTES).enumerate() {
        if !Entry::sealed(b) {
            return Err(bad(i, "its checksum does not match its bytes".into()));
        }
        let e = Entry::from_bytes(b);
        if e.flags & !(PRESENT | WIDE) != 0 {
            return Err(bad(i, format!("unknown flags {:#x}", e.flags)));
        }
        if e.flags & PRESENT == 0 {
            if e.flags != 0 || e.len != 0 {
                return Err(bad(i, "an absent image with pixels".into()));
            }
            if !failed.contains(&i) {
                return Err(bad(
                    i,
                    "no image, but not one the build could not decode".into(),
                ));
            }
            continue;
        }
        if failed.contains(&i) {
            return Err(bad(i, "an image the build could not decode".into()));
        }
        if !channels.contains(&e.channels) {
            return Err(bad(
                i,
                format!(
                    "{} channels in a cache of {} images",
                    e.channels, settings.mode
                ),
            ));
        }
        let pixels = (e.width as u64).checked_mul(e.height as u64);
        if e.width == 0 || e.height == 0 || pixels.is_none_or(|p| p > settings.max_pixels) {
            return Err(bad(
                i,
                format!(
                    "{}x{} pixels (the limit is {})",
                    e.width, e.height, settings.max_pixels
                ),
            ));
        }
        let sample = if e.flags & WIDE != 0 { 2 } else { 1 };
        let want = pixels.and_then(|p| p.checked_mul(e.channels as u64 * sample));
        if want != Some(e.len) {
            return Err(bad(
                i,
                format!(
                    "{} bytes for {}x{}x{}{}",
                    e.len,
                    e.width,
                    e.height,
                    e.channels,
                    if sample == 2 { " uint16" } else { "" }
                ),
            ));
        }
        if e.len > settings.max_bytes {
            return Err(bad(
                i,
                format!("{} bytes (the limit is {})", e.len, settings.max_bytes),
            ));
        }
        // the covering rule: a reduced decode (denominator above 1) still covers the target
        let reduced_ok = e.denom == 1
            || ((tw, th) != (0, 0) && e.width as usize >= tw && e.height as usize >= th);
        if !e.denom.is_power_of_two() || !reduced_ok {
            return Err(bad(
                i,
                format!(
                    "scale denominator {} for {}x{} decoded to cover {tw}x{th}",
                    e.denom, e.width, e.height
                ),
            ));
        }
        let end = e.range().filter(|_| e.offset % ALIGN == 0);
        let Some(end) = end.map(|r| r.end) else {
            return Err(bad(
                i,
                format!("offset {} (not {ALIGN}-byte aligned)", e.offset),
            ));
        };
        placed.push((e.shard, e.offset, end, i));
        total = total.saturating_add(e.len);
    }
    placed.sort_unstable();
    for w in placed.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.0 == b.0 && a.2 > b.1 {
            return Err(bad(
                b.3,
                format!(
                    "its bytes {}..{} of shard {} overlap entry {}'s",
                    b.1, b.2, b.0, a.3
                ),
            ));
        }
    }
    if total != header.bytes {
        return Err(format!(
            "the entries hold {total} bytes, the header says {}",
            header.bytes
        ));
    }
    Ok(())
}

/// The file (local) or object (in a store) name of shard `k`.
pub(crate) fn shard_name(k: u32) -> String {
    format!("shard-{k:03}.bin")
}

/// One record's place in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Entry {
    key: u64,
    shard: u32,
    flags: u32,
    offset: u64,
    len: u64,
    width: u32,
    height: u32,
    channels: u32,
    denom: u32,
    source_size: u64,
    source_mtime_ns: i64,
    source_hash: u64,
    /// CRC-32 of the pixels and of what turns them into a sample ([`Entry::pixel_checksum`]).
    pixels_crc: u32,
}

impl Entry {
    /// The entry's bytes, sealed with the CRC-32 of the rest as their last 4.
    fn to_bytes(self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        let mut at = 0;
        let mut put = |v: &[u8]| {
            b[at..at + v.len()].copy_from_slice(v);
            at += v.len();
        };
        put(&self.key.to_le_bytes());
        put(&self.shard.to_le_bytes());
        put(&self.flags.to_le_bytes());
        put(&self.offset.to_le_bytes());
        put(&self.len.to_le_bytes());
        put(&self.width.to_le_bytes());
        put(&self.height.to_le_bytes());
        put(&self.channels.to_le_bytes());
        put(&self.denom.to_le_bytes());
        put(&self.source_size.to_le_bytes());
        put(&self.source_mtime_ns.to_le_bytes());
        put(&self.source_hash.to_le_bytes());
        put(&self.pixels_crc.to_le_bytes());
        let seal = crc32fast::hash(&b[..SEALED]);
        b[SEALED..].copy_from_slice(&seal.to_le_bytes());
        b
    }

    /// Whether `b`'s last 4 bytes are the CRC-32 of the rest (the entry is as written).
    fn sealed(b: &[u8]) -> bool {
        b.len() == ENTRY_BYTES
            && crc32fast::hash(&b[..SEALED]).to_le_bytes() == b[SEALED..ENTRY_BYTES]
    }

    /// The CRC-32 of `pixels` followed by what turns them into a sample: the shape, the type
    /// (`WIDE`) and the decoder's scale denominator (boxes are scaled by it). Written at build
    /// time and checked on each read, so damaged pixels, or pixels read from the wrong place, or
    /// a changed shape or scale, are never a sample.
    fn pixel_checksum(&self, pixels: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(pixels);
        for v in [
            self.width,
            self.height,
            self.channels,
            self.denom,
            self.flags & WIDE,
        ] {
            h.update(&v.to_le_bytes());
        }
        h.finalize()
    }

    fn from_bytes(b: &[u8]) -> Entry {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Entry {
            key: u64_at(0),
            shard: u32_at(8),
            flags: u32_at(12),
            offset: u64_at(16),
            len: u64_at(24),
            width: u32_at(32),
            height: u32_at(36),
            channels: u32_at(40),
            denom: u32_at(44),
            source_size: u64_at(48),
            source_mtime_ns: u64_at(56) as i64,
            source_hash: u64_at(64),
            pixels_crc: u32_at(72),
        }
    }
}

impl Entry {
    /// Where the entry's pixels lie in its shard; `None` when the index is corrupt (overflow).
    fn range(&self) -> Option<Range<u64>> {
        Some(self.offset..self.offset.checked_add(self.len)?)
    }

    /// The pixels' shape, and their bytes: `width * height * channels` samples of one byte, or
    /// of two (little-endian `uint16`) for a wide entry. The one home of how an entry's bytes
    /// become pixels, for mapped and for fetched bytes.
    fn shape(&self, got: usize, name: &str) -> Result<(usize, usize, usize, bool)> {
        let (width, height, channels) = (
            self.width as usize,
            self.height as usize,
            self.channels as usize,
        );
        let wide = self.flags & WIDE != 0;
        let want = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(channels))
            .and_then(|n| n.checked_mul(if wide { 2 } else { 1 }));
        if want != Some(got) {
            return Err(Error::decode(
                name,
                format!(
                    "a short cache entry ({got} bytes for {width}x{height}x{channels}{})",
                    if wide { " uint16" } else { "" }
                ),
            ));
        }
        Ok((width, height, channels, wide))
    }

    /// The pixels in `bytes`, borrowed (a mapped shard: no copy).
    fn view<'a>(&self, bytes: &'a [u8], name: &str) -> Result<DecodedRef<'a>> {
        let (width, height, channels, wide) = self.shape(bytes.len(), name)?;
        Ok(if wide {
            // SAFETY: u16 has no invalid bit patterns; offsets are 64-byte aligned in a
            // page-aligned map, so `head` is empty (checked).
            let (head, words, _) = unsafe { bytes.align_to::<u16>() };
            if !head.is_empty() || words.len() * 2 != bytes.len() {
                return Err(Error::decode(name, "a misaligned cache entry"));
            }
            DecodedRef::U16(ImageRef {
                width,
                height,
                channels,
                data: words,
            })
        } else {
            DecodedRef::U8(ImageRef {
                width,
                height,
                channels,
                data: bytes,
            })
        })
    }

    /// The pixels in `bytes`, owned (fetched from a store: a uint8 entry keeps the buffer).
    fn owned(&self, bytes: Vec<u8>, name: &str) -> Result<Decoded> {
        let (width, height, channels, wide) = self.shape(bytes.len(), name)?;
        Ok(if wide {
            let data = bytes
                .chunks_exact(2)
                .map(|w| u16::from_le_bytes([w[0], w[1]]))
                .collect();
            Decoded::U16(Image {
                width,
                height,
                channels,
                data,
            })
        } else {
            Decoded::U8(Image {
                width,
                height,
                channels,
                data: bytes,
            })
        })
    }
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of `bytes`.
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    fnv(bytes, FNV_START)
}

/// The manifest's fingerprint: its record ids, in order.
fn fingerprint(manifest: &Manifest) -> String {
    let h = (0..manifest.len()).fold(FNV_START, |h, i| {
        fnv(&[0], fnv(manifest.id(i).as_bytes(), h))
    });
    format!("{h:016x}")
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        name: path.display().to_string(),
        source,
    }
}

/// Refuse a cache file that exists but is not a regular file (a FIFO would block the open
/// forever, a device such as `/dev/zero` would be read until memory runs out), before it is
/// opened; a missing file is left to the open, which names it.
fn regular_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(Error::invalid(format!(
            "{}: not a regular file (a FIFO, socket, device or directory); only regular files \
             are read",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Size and modification time of a local source file (`(len, 0)` for a remote one, whose
/// checksum alone identifies it).
fn source_stamp(path: &Path) -> Option<(u64, i64)> {
    let meta = std::fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    Some((meta.len(), mtime))
}

/// Where a cache's bytes come from.
enum Files {
    /// A local folder, memory-mapped: pixels are read in place.
    Mapped { index: Mmap, shards: Vec<Mmap> },
    /// An object store prefix: the index read at open, pixels fetched by ranged reads.
    Remote(RemoteFiles),
}

/// A finished cache: a local folder (memory-mapped) or a prefix in an object store.
pub struct Cache {
    /// The folder, or the store URL, of the cache.
    pub dir: PathBuf,
    pub(crate) header: Header,
    files: Files,
    /// Cached pixels that could not be read and were decoded instead (`fallback`).
    fallbacks: Fallbacks,
    /// Whether reads check the pixels' checksum (always, but for measuring what it costs).
    verify: bool,
}

/// How often a cached read failed and the image was decoded instead, and the first such error:
/// a damaged or unreachable cache costs speed, not samples, and says so.
#[derive(Default)]
struct Fallbacks {
    count: std::sync::atomic::AtomicU64,
    first: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.dir.display())
    }
}

/// Pixels of a cached image: borrowed from a memory map, or fetched from a store.
enum CachedPixels<'a> {
    Mapped(DecodedRef<'a>),
    Fetched(Decoded),
}

/// A cached image, with the decoder's scale denominator.
pub struct CachedImage<'a> {
    pixels: CachedPixels<'a>,
    pub denom: usize,
}

impl CachedImage<'_> {
    /// The pixels (in place for a local cache).
    pub fn image(&self) -> DecodedRef<'_> {
        match &self.pixels {
            CachedPixels::Mapped(image) => *image,
            CachedPixels::Fetched(image) => image.view(),
        }
    }
}

impl Cache {
    /// Open the cache at `location`: a folder, a `file://` URL or an object store URL
    /// (`s3://bucket/prefix`, ...). An unfinished or foreign cache is an error saying so.
    pub fn open(location: &Path) -> Result<Cache> {
        match location.to_str() {
            Some(url) if storage::is_remote(url) => {
                let (header, files) = cache_remote::open(url)?;
                Ok(Cache {
                    dir: PathBuf::from(url.trim_end_matches('/')),
                    header,
                    files: Files::Remote(files),
                    fallbacks: Fallbacks::default(),
                    verify: true,
                })
            }
            Some(url) if url.starts_with("file://") => {
                Cache::open_local(&storage::local_path(url)?)
            }
            _ => Cache::open_local(location),
        }
    }

    fn open_local(dir: &Path) -> Result<Cache> {
        let head_path = dir.join("cache.json");
        regular_file(&head_path)?;
        let text = std::fs::read_to_string(&head_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && dir.join("build.json").exists() {
                unfinished(&dir.display().to_string())
            } else {
                io(&head_path)(e)
            }
        })?;
        let header = Header::parse(
            &text,
            &head_path.display().to_string(),
            &dir.display().to_string(),
        )?;
        let map = |p: &Path| -> Result<Mmap> {
            regular_file(p)?;
            let f = File::open(p).map_err(io(p))?;
            // SAFETY: the cache's files are written once, by a finished build, and only read
            // afterwards; a file changed under the map is outside this contract (documented).
            unsafe { Mmap::map(&f) }.map_err(io(p))
        };
        let index = map(&dir.join("index.bin"))?;
        check_index(
            &index,
            &header,
            &dir.join("index.bin").display().to_string(),
        )?;
        let mut shards = Vec::new();
        loop {
            let p = dir.join(shard_name(shards.len() as u32));
            if !p.exists() {
                break;
            }
            shards.push(map(&p)?);
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            header,
            files: Files::Mapped { index, shards },
            fallbacks: Fallbacks::default(),
            verify: true,
        })
    }

    /// This cache with the pixels' checksums checked on each read (the default) or not: turning
    /// the check off is for measuring its cost; a damaged cache then gives wrong samples.
    pub fn verifying(mut self, verify: bool) -> Cache {
        self.verify = verify;
        self
    }

    /// Whether the cache lies in an object store.
    pub fn is_remote(&self) -> bool {
        matches!(self.files, Files::Remote(_))
    }

    /// Refuse a cache built from another manifest or with other decode settings, saying what
    /// differs.
    pub fn check(&self, spec: &DatasetSpec) -> Result<()> {
        let mut differs = Vec::new();
        let records = spec.manifest.len();
        if self.header.records != records || self.header.fingerprint != fingerprint(&spec.manifest)
        {
            differs.push(format!(
                "it was built from manifest {} ({} records), not from {} ({} records, other ids \
                 or order)",
                self.header.manifest, self.header.records, spec.manifest.name, records
            ));
        }
        let want = CacheSettings::of(spec);
        let have = &self.header.settings;
        if have.decode_target != want.decode_target {
            differs.push(format!(
                "it holds images decoded to cover {}x{}, this data set decodes to cover {}x{} \
                 (its image_size and smallest crop; build the cache with the data set's settings)",
                have.decode_target.0,
                have.decode_target.1,
                want.decode_target.0,
                want.decode_target.1
            ));
        }
        if have.mode != want.mode {
            differs.push(format!(
                "it holds {} images, this data set reads {} (channels)",
                have.mode, want.mode
            ));
        }
        if have.full_range != want.full_range
            || have.max_pixels != want.max_pixels
            || have.max_bytes != want.max_bytes
        {
            differs.push(format!(
                "its decode limits differ (max_pixels {} / {}, max_bytes {} / {})",
                have.max_pixels, want.max_pixels, have.max_bytes, want.max_bytes
            ));
        }
        if differs.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the cache in {} does not fit this data set: {}",
                self.dir.display(),
                differs.join("; ")
            )))
        }
    }

    fn entry(&self, index: usize) -> Option<Entry> {
        let index_bytes: &[u8] = match &self.files {
            Files::Mapped { index, .. } => index,
            Files::Remote(r) => &r.index,
        };
        let at = index.checked_mul(ENTRY_BYTES)?;
        index_bytes
            .get(at..at.checked_add(ENTRY_BYTES)?)
            .map(Entry::from_bytes)
    }

    /// Whether the cache holds record `index`'s pixels (its build decoded the image).
    pub fn holds(&self, index: usize) -> bool {
        self.entry(index).is_some_and(|e| e.flags & PRESENT != 0)
    }

    /// Start fetching record `index`'s pixels from a cache in a store (one ranged read of its
    /// shard); `None` for a local cache (nothing to fetch) or a record it does not hold.
    pub fn prefetch(&self, index: usize) -> Option<Pending> {
        let Files::Remote(remote) = &self.files else {
            return None;
        };
        let e = self.entry(index).filter(|e| e.flags & PRESENT != 0)?;
        remote.prefetch(e.shard, e.range()?).ok()
    }

    /// Record `index`'s entry, checked: `Ok(None)` when the build could not decode its image; an
    /// error when the entry belongs to another record or the local source file changed since the
    /// build (size or modification time; an image in a store is identified by its checksum,
    /// recorded at build time).
    fn locate(&self, index: usize, record: &Record, name: &str) -> Result<Option<Entry>> {
        let e = self
            .entry(index)
            .ok_or_else(|| Error::invalid(format!("the cache has no entry {index}")))?;
        if e.flags & PRESENT == 0 {
            return Ok(None);
        }
        if e.key != id_key(&record.id) {
            return Err(Error::decode(
                name,
                format!("the cache's entry {index} belongs to another record id"),
            ));
        }
        let remote = record.image.to_str().is_some_and(storage::is_remote);
        if !remote && source_stamp(&record.image) != Some((e.source_size, e.source_mtime_ns)) {
            return Err(Error::decode(
                name,
                format!(
                    "the file changed since the cache in {} was built (size or modification \
                     time); rebuild the cache",
                    self.dir.display()
                ),
            ));
        }
        Ok(Some(e))
    }

    /// The pixels of the checked entry `e`: in place from the map, or fetched (`prefetched`,
    /// when the read was started ahead).
    fn pixels(
        &self,
        index: usize,
        e: &Entry,
        name: &str,
        prefetched: Option<Pending>,
    ) -> Result<CachedImage<'_>> {
        // the pixels' checksum, with the shape and scale that make them a sample
        let verify = |bytes: &[u8], shard: String| {
            if self.verify && e.pixel_checksum(bytes) != e.pixels_crc {
                return Err(Error::decode(
                    &shard,
                    format!(
                        "{} (cache entry {index}, image {name}): the pixels do not match their \
                         checksum (damaged cache pixels, or the wrong bytes read)",
                        storage::range_label(&(e.offset..e.offset.saturating_add(e.len)))
                    ),
                ));
            }
            Ok(())
        };
        let pixels = match &self.files {
            Files::Mapped { shards, .. } => {
                let bytes = e
                    .range()
                    .and_then(|r| {
                        let shard = shards.get(e.shard as usize)?;
                        shard.get(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?)
                    })
                    .ok_or_else(|| {
                        let shard = self.dir.join(shard_name(e.shard));
                        Error::decode(
                            &shard.display().to_string(),
                            format!(
                                "{}: missing, or shorter than the cache's index says (cache \
                                 entry {index})",
                                storage::range_label(&(e.offset..e.offset.saturating_add(e.len)))
                            ),
                        )
                    })?;
                verify(
                    bytes,
                    self.dir.join(shard_name(e.shard)).display().to_string(),
                )?;
                CachedPixels::Mapped(e.view(bytes, name)?)
            }
            Files::Remote(remote) => {
                let range = e
                    .range()
                    .ok_or_else(|| Error::decode(name, "a corrupt cache index entry"))?;
                let bytes = remote.read(e.shard, range, prefetched)?;
                verify(&bytes, remote.shard_url(e.shard))?;
                CachedPixels::Fetched(e.owned(bytes, name)?)
            }
        };
        Ok(CachedImage {
            pixels,
            denom: e.denom as usize,
        })
    }

    /// Record `index`'s cached image as a data set with `fallback` (`cache_fallback`) reads it:
    /// `Ok(None)` means decode the image instead. A record the build could not decode, or whose
    /// pixels cannot be read (a failed ranged read, a missing or short shard) or fail their
    /// checksum, is decoded with `fallback` (counted, [`Cache::read_failures`]) and an error
    /// without it; a failed check (another record, a changed source
    /// file) is an error either way. `prefetched` is taken when it is this record's cached read
    /// ([`Cache::prefetch`]) and left for the image's read otherwise.
    pub fn lookup(
        &self,
        index: usize,
        record: &Record,
        fallback: bool,
        prefetched: &mut Option<Pending>,
    ) -> Result<Option<CachedImage<'_>>> {
        let name = record.image.display().to_string();
        let Some(e) = self.locate(index, record, &name)? else {
            if fallback {
                return Ok(None);
            }
            return Err(Error::invalid(format!(
                "the cache in {} does not hold this image (its build could not decode it)",
                self.dir.display()
            )));
        };
        let mine = if self.is_remote() {
            prefetched.take()
        } else {
            None
        };
        match self.pixels(index, &e, &name, mine) {
            Ok(image) => Ok(Some(image)),
            Err(err) if fallback => {
                self.fallbacks.count.fetch_add(1, Ordering::Relaxed);
                let _ = self.fallbacks.first.set(err.to_string());
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// How many cached reads failed and were decoded instead, and the first failure's error.
    pub fn read_failures(&self) -> (u64, Option<&str>) {
        let f = &self.fallbacks;
        (
            f.count.load(Ordering::Relaxed),
            f.first.get().map(String::as_str),
        )
    }
}

/// What a build did.
#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub records: usize,
    /// Images decoded by this run (the rest came from an earlier, interrupted one).
    pub decoded: usize,
    pub failed: Vec<(usize, String)>,
    pub bytes: u64,
    pub seconds: f64,
    /// For a cache in an object store: what the upload did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadReport>,
}

/// One build thread's shard and journal.
struct Writer {
    shard: u32,
    data: File,
    journal: File,
    end: u64,
}

fn journal_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(format!("shard-{k:03}.entries"))
}

pub(crate) fn shard_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(shard_name(k))
}

/// The journal's whole records: `(record index, entry)`.
fn read_journal(path: &Path) -> Result<Vec<(usize, Entry)>> {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        f.read_to_end(&mut bytes).map_err(io(path))?;
    }
    Ok(bytes
        .chunks_exact(8 + ENTRY_BYTES)
        .map(|c| {
            let i = u64::from_le_bytes(c[..8].try_into().expect("8 bytes")) as usize;
            (i, Entry::from_bytes(&c[8..]))
        })
        .collect())
}

impl Writer {
    /// Open shard `k` for appending after its last journaled image (resuming a build).
    fn open(dir: &Path, k: u32, journaled: &[(usize, Entry)]) -> Result<Writer> {
        let end = journaled
            .iter()
            .filter(|(_, e)| e.flags & PRESENT != 0)
            .map(|(_, e)| e.offset + e.len)
            .max()
            .unwrap_or(0);
        let sp = shard_path(dir, k);
        let data = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&sp)
            .map_err(io(&sp))?;
        data.set_len(end).map_err(io(&sp))?; // drop what a killed build wrote past its journal
        let jp = journal_path(dir, k);
        let mut journal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&jp)
            .map_err(io(&jp))?;
        let whole = (journaled.len() * (8 + ENTRY_BYTES)) as u64;
        journal.set_len(whole).map_err(io(&jp))?; // and a journal record cut short
        journal.seek(SeekFrom::End(0)).map_err(io(&jp))?;
        Ok(Writer {
            shard: k,
            data,
            journal,
            end,
        })
    }

    fn append(&mut self, dir: &Path, index: usize, mut e: Entry, pixels: &[u8]) -> Result<()> {
        if e.flags & PRESENT != 0 {
            let offset = self.end.div_ceil(ALIGN) * ALIGN;
            let sp = shard_path(dir, self.shard);
            self.data.seek(SeekFrom::Start(offset)).map_err(io(&sp))?;
            self.data.write_all(pixels).map_err(io(&sp))?;
            self.data.sync_data().map_err(io(&sp))?;
            e.shard = self.shard;
            e.offset = offset;
            e.len = pixels.len() as u64;
            self.end = offset + e.len;
        }
        let mut rec = (index as u64).to_le_bytes().to_vec();
        rec.extend_from_slice(&e.to_bytes());
        let jp = journal_path(dir, self.shard);
        self.journal.write_all(&rec).map_err(io(&jp))?;
        Ok(())
    }
}

/// Decode record `index` as the loader would and describe it (its pixels as bytes).
fn decode_record(
    spec: &DatasetSpec,
    index: usize,
) -> std::result::Result<(Entry, Vec<u8>), String> {
    let rec = spec.manifest.record(index).map_err(|e| e.to_string())?;
    let path = spec.manifest.image_path(&rec).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    let opts = spec.decode_options();
    let limit = max_file_bytes(opts.max_bytes);
    let bytes = storage::read_bytes(path, limit, |p| read_image_file(p, &name, limit))
        .map_err(|e| e.to_string())?;
    let remote = path.to_str().is_some_and(storage::is_remote);
    let (size, mtime) = if remote {
        (bytes.len() as u64, 0)
    } else {
        source_stamp(path).ok_or_else(|| format!("cannot stat {name}"))?
    };
    let hash = fnv(&bytes, FNV_START);
    let (decoded, denom) = decode_scaled(&bytes, &name, &opts).map_err(|e| e.to_string())?;
    drop(bytes);
    let (w, h, c) = decoded.dims();
    let (flags, pixels) = match decoded {
        Decoded::U8(img) => (PRESENT, img.data),
        Decoded::U16(img) => (
            PRESENT | WIDE,
            img.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
    };
    let mut entry = Entry {
        key: id_key(&rec.id),
        flags,
        width: w as u32,
        height: h as u32,
        channels: c as u32,
        denom: denom as u32,
        source_size: size,
        source_mtime_ns: mtime,
        source_hash: hash,
        ..Entry::default()
    };
    entry.pixels_crc = entry.pixel_checksum(&pixels);
    Ok((entry, pixels))
}

/// Decode every record of `spec` once into a cache in `dir` (created), on `threads` threads,
/// resuming an interrupted build of the same settings. `progress` counts finished records
/// (including those of an earlier run); setting `stop` ends the build early, resumably.
pub fn build(
    spec: &DatasetSpec,
    dir: &Path,
    threads: usize,
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<BuildReport> {
    let start = Instant::now();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let records = spec.manifest.len();
    let header = Header::plan(spec);
    if dir.join("cache.json").exists() {
        let cache = Cache::open(dir)?;
        cache.check(spec)?;
        progress.store(records, Ordering::Relaxed);
        return Ok(BuildReport {
            records,
            decoded: 0,
            failed: cache.header.failed.clone(),
            bytes: cache.header.bytes,
            seconds: 0.0,
            upload: None,
        });
    }
    // the unfinished build's settings: a resume must be of the same build
    let marker = dir.join("build.json");
    let plan = serde_json::to_string_pretty(&header).map_err(|e| Error::invalid(e.to_string()))?;
    if let Ok(old) = std::fs::read_to_string(&marker) {
        let old: Header = serde_json::from_str(&old)
            .map_err(|e| Error::decode(&marker.display().to_string(), e.to_string()))?;
        old.same_build(&header, &dir.display().to_string())?;
    } else {
        std::fs::write(&marker, &plan).map_err(io(&marker))?;
    }
    // every journal of an earlier run (whatever its thread count) and what it finished
    let mut journals: Vec<Vec<(usize, Entry)>> = Vec::new();
    loop {
        let p = journal_path(dir, journals.len() as u32);
        if !p.exists() {
            break;
        }
        journals.push(read_journal(&p)?);
    }
    let threads = threads.max(1);
    while journals.len() < threads {
        journals.push(Vec::new());
    }
    let done: HashSet<usize> = journals.iter().flatten().map(|(i, _)| *i).collect();
    let todo: Vec<usize> = (0..records).filter(|i| !done.contains(i)).collect();
    progress.store(done.len(), Ordering::Relaxed);
    let next = AtomicUsize::new(0);
    let decoded = AtomicUsize::new(0);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let (todo, next, decoded, journals) = (&todo, &next, &decoded, &journals);
                s.spawn(move || -> Result<()> {
                    let mut w = Writer::open(dir, k as u32, &journals[k])?;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let Some(&index) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            return Ok(());
                        };
                        let (entry, pixels) = match decode_record(spec, index) {
                            Ok(done) => done,
                            Err(_) => (
                                Entry {
                                    key: id_key(spec.manifest.id(index)),
                                    ..Entry::default()
                                },
                                Vec::new(),
                            ),
                        };
                        w.append(dir, index, entry, &pixels)?;
                        decoded.fetch_add(1, Ordering::Relaxed);
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::invalid("a cache build thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    if stop.load(Ordering::Relaxed) {
        return Err(Error::invalid(format!(
            "the cache build in {} was stopped; run it again to resume",
            dir.display()
        )));
    }
    // the index, in manifest order, from every journal
    let mut entries = vec![Entry::default(); records];
    let mut bytes = 0;
    for k in 0.. {
        let p = journal_path(dir, k);
        if !p.exists() {
            break;
        }
        for (i, e) in read_journal(&p)? {
            if i < records {
                bytes += e.len;
                entries[i] = e;
            }
        }
    }
    let mut failed = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.flags & PRESENT == 0 {
            // decode it once more for the reason (failures are rare)
            let why = decode_record(spec, i).err().unwrap_or_default();
            failed.push((i, why));
        }
    }
    let index_path = dir.join("index.bin");
    let mut out = Vec::with_capacity(records * ENTRY_BYTES);
    for e in &entries {
        out.extend_from_slice(&e.to_bytes());
    }
    std::fs::write(&index_path, out).map_err(io(&index_path))?;
    let seconds = start.elapsed().as_secs_f64();
    let header = Header {
        failed: failed.clone(),
        bytes,
        build_seconds: seconds,
        ..header
    };
    let text = serde_json::to_string_pretty(&header).map_err(|e| Error::invalid(e.to_string()))?;
    let tmp = dir.join("cache.json.tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("cache.json")).map_err(io(dir))?;
    for k in 0.. {
        let p = journal_path(dir, k);
        if std::fs::remove_file(&p).is_err() {
            break;
        }
    }
    let _ = std::fs::remove_file(&marker);
    Ok(BuildReport {
        records,
        decoded: decoded.into_inner(),
        failed,
        bytes,
        seconds,
        upload: None,
    })
}

/// A cache to read from, shared by a data set's workers.
pub type SharedCache = Arc<Cache>;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(width: u32, height: u32, channels: u32, flags: u32) -> Entry {
        Entry {
            flags,
            width,
            height,
            channels,
            offset: 128,
            len: (width * height * channels * if flags & WIDE != 0 { 2 } else { 1 }) as u64,
            ..Entry::default()
        }
    }

    #[test]
    fn an_entry_round_trips_through_its_bytes() {
        let e = Entry {
            key: 7,
            shard: 3,
            source_mtime_ns: -5,
            source_hash: u64::MAX,
            pixels_crc: 0xdead_beef,
            ..entry(4, 2, 3, PRESENT)
        };
        assert_eq!(Entry::from_bytes(&e.to_bytes()), e);
        assert!(Entry::sealed(&e.to_bytes()));
    }

    #[test]
    fn any_changed_byte_of_an_entry_breaks_its_seal() {
        let b = entry(4, 2, 1, PRESENT).to_bytes();
        for at in 0..ENTRY_BYTES {
            for bit in [0x01u8, 0x80] {
                let mut c = b;
                c[at] ^= bit;
                assert!(!Entry::sealed(&c), "byte {at} bit {bit:#x}");
            }
        }
    }

    /// What the pixel checksum costs for a 256 KiB image (a 512 x 512 grey cache entry), read
    /// again (in the CPU's cache) and from memory (a different image each time, 512 MiB of
    /// them): `cargo test -p gradatim-core --release checksum_throughput -- --ignored
    /// --nocapture` (docs/cache.md).
    #[test]
    #[ignore]
    fn checksum_throughput() {
        let image = 256 * 1024;
        let all: Vec<u8> = (0..512usize << 20).map(|i| (i ^ (i >> 9)) as u8).collect();
        let e = entry(512, 512, 1, PRESENT);
        for (label, span) in [("in cache", image), ("from memory", all.len())] {
            let n = span / image;
            let mut best = f64::MAX;
            for r in 0..5 {
                let start = Instant::now();
                let mut acc = 0u32;
                for j in 0..2048 {
                    let at = ((j * 7 + r) % n) * image;
                    acc ^= e.pixel_checksum(std::hint::black_box(&all[at..at + image]));
                }
                std::hint::black_box(acc);
                best = best.min(start.elapsed().as_secs_f64() / 2048.0);
            }
            println!(
                "pixel checksum of a 256 KiB image, {label}: {:.1} us ({:.1} GB/s)",
                best * 1e6,
                image as f64 / best / 1e9
            );
        }
    }

    #[test]
    fn the_pixel_checksum_covers_pixels_shape_type_and_scale() {
        let e = Entry {
            denom: 2,
            ..entry(2, 2, 1, PRESENT)
        };
        let px = [1u8, 2, 3, 4];
        let crc = e.pixel_checksum(&px);
        assert_eq!(crc, e.pixel_checksum(&px));
        assert_ne!(crc, e.pixel_checksum(&[1, 2, 3, 5]));
        for other in [
            Entry { denom: 6, ..e },
            Entry {
                width: 4,
                height: 1,
                ..e
            },
            Entry {
                channels: 4,
                width: 1,
                height: 1,
                ..e
            },
            Entry {
                flags: PRESENT | WIDE,
                ..e
            },
        ] {
            assert_ne!(crc, other.pixel_checksum(&px), "{other:?}");
        }
        // where the pixels lie is the index's business (sealed), not the pixels'
        assert_eq!(
            crc,
            Entry {
                offset: 4096,
                shard: 1,
                ..e
            }
            .pixel_checksum(&px)
        );
    }

    fn header(mode: &str, target: (usize, usize), entries: &[Entry], failed: &[usize]) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            manifest: "m".into(),
            records: entries.len(),
            fingerprint: "0".into(),
            settings: CacheSettings {
                decode_target: target,
                mode: mode.into(),
                full_range: true,
                max_pixels: 1 << 20,
                max_bytes: 1 << 22,
            },
            failed: failed.iter().map(|&i| (i, "bad".into())).collect(),
            bytes: entries.iter().map(|e| e.len).sum(),
            build_seconds: 0.0,
        }
    }

    fn index_of(entries: &[Entry]) -> Vec<u8> {
        entries.iter().flat_map(|e| e.to_bytes()).collect()
    }

    /// Three entries as a build writes them: two images in shard 0, one absent (failed) record.
    fn good() -> Vec<Entry> {
        let a = Entry {
            denom: 2,
            ..entry(40, 30, 1, PRESENT)
        };
        let b = Entry {
            offset: 1280,
            denom: 1,
            ..entry(8, 8, 1, PRESENT | WIDE)
        };
        let a = Entry { offset: 0, ..a };
        vec![a, Entry::default(), b]
    }

    fn why(entries: &[Entry], mode: &str) -> String {
        let h = header(mode, (32, 24), entries, &[1]);
        validate_index(&index_of(entries), &h).unwrap_err()
    }

    #[test]
    fn a_built_index_is_valid() {
        let e = good();
        let h = header("gray", (32, 24), &e, &[1]);
        validate_index(&index_of(&e), &h).unwrap();
        let h = header("gray", (32, 24), &e, &[]);
        let err = validate_index(&index_of(&e), &h).unwrap_err();
        assert!(err.starts_with("entry 1 (record 1"), "{err}");
        let h = header("gray", (32, 24), &e, &[1, 2]);
        assert!(validate_index(&index_of(&e), &h)
            .unwrap_err()
            .starts_with("entry 2"));
    }

    #[test]
    fn each_damage_of_an_entry_is_named() {
        let g = good();
        let with = |k: usize, f: &dyn Fn(&mut Entry)| {
            let mut e = g.clone();
            f(&mut e[k]);
            e
        };
        let cases: Vec<(Vec<Entry>, &str, &str)> = vec![
            // channels the colour mode does not allow (the per-channel normalisation's panic)
            (
                with(0, &|e| {
                    e.channels = 3;
                    e.width = 10;
                    e.len = 10 * 30 * 3
                }),
                "gray",
                "3 channels",
            ),
            (
                with(0, &|e| e.channels = 1),
                "rgb",
                "1 channels in a cache of rgb",
            ),
            (with(0, &|e| e.len = 1199), "gray", "1199 bytes for 40x30x1"),
            (
                with(2, &|e| e.flags = PRESENT),
                "gray",
                "128 bytes for 8x8x1",
            ),
            (with(0, &|e| e.flags |= 8), "gray", "unknown flags"),
            (with(0, &|e| e.denom = 6), "gray", "scale denominator 6"),
            (with(0, &|e| e.denom = 0), "gray", "scale denominator 0"),
            // a reduced decode smaller than the target it had to cover
            (
                with(2, &|e| e.denom = 4),
                "gray",
                "scale denominator 4 for 8x8",
            ),
            (
                with(2, &|e| e.offset = 1288),
                "gray",
                "offset 1288 (not 64-byte aligned)",
            ),
            (with(2, &|e| e.offset = 1152), "gray", "overlap entry 0"),
            (
                with(2, &|e| e.offset = u64::MAX - 63),
                "gray",
                "not 64-byte aligned",
            ),
            (
                with(0, &|e| {
                    e.width = 1 << 11;
                    e.height = 1 << 11;
                    e.len = 1 << 22
                }),
                "gray",
                "pixels (the limit",
            ),
            (
                with(1, &|e| e.flags = WIDE),
                "gray",
                "an absent image with pixels",
            ),
            (
                with(1, &|e| e.len = 64),
                "gray",
                "an absent image with pixels",
            ),
        ];
        for (entries, mode, want) in cases {
            let err = why(&entries, mode);
            assert!(err.contains(want), "{err} (want {want})");
        }
        // a byte changed without resealing: the entry's own checksum
        let mut raw = index_of(&g);
        raw[ENTRY_BYTES * 2 + 44] ^= 1;
        let h = header("gray", (32, 24), &g, &[1]);
        let err = validate_index(&raw, &h).unwrap_err();
        assert!(
            err.starts_with("entry 2") && err.contains("checksum"),
            "{err}"
        );
        // the header's byte count
        let mut h = header("gray", (32, 24), &g, &[1]);
        h.bytes += 1;
        assert!(validate_index(&index_of(&g), &h)
            .unwrap_err()
            .contains("header says"));
    }

    #[test]
    fn the_range_is_offset_and_length_and_overflow_is_none() {
        let e = entry(4, 2, 1, PRESENT);
        assert_eq!(e.range(), Some(128..136));
        let bad = Entry {
            offset: u64::MAX - 3,
            ..e
        };
        assert_eq!(bad.range(), None);
    }

    #[test]
    fn mapped_pixels_are_borrowed_and_fetched_ones_equal_them() {
        let e = entry(3, 2, 1, PRESENT | WIDE);
        // u16-aligned storage, viewed as bytes
        let words: Vec<u16> = vec![1, 2, 0x0102, 4, 65535, 6];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let aligned: Vec<u16> = words.clone();
        // SAFETY: a u16 buffer seen as its bytes (little-endian host in CI)
        let raw = unsafe { std::slice::from_raw_parts(aligned.as_ptr() as *const u8, 12) };
        let DecodedRef::U16(view) = e.view(raw, "x").unwrap() else {
            panic!("a wide entry is u16")
        };
        assert_eq!(view.data.as_ptr(), aligned.as_ptr()); // in place, no copy
        let Decoded::U16(owned) = e.owned(bytes, "x").unwrap() else {
            panic!("a wide entry is u16")
        };
        assert_eq!(owned.data, words);
        assert_eq!(view.data, &owned.data[..]);
        assert_eq!((owned.width, owned.height, owned.channels), (3, 2, 1));
    }

    #[test]
    fn a_short_entry_is_an_error_naming_the_image() {
        let e = entry(3, 2, 1, PRESENT);
        let err = e.owned(vec![0; 5], "img.png").unwrap_err().to_string();
        assert!(err.contains("img.png") && err.contains("short"), "{err}");
        assert!(e.view(&[0; 7], "img.png").is_err());
        assert!(e.view(&[0; 6], "img.png").is_ok());
    }
}
