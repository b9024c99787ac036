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
//!   scale denominator, and the source file's size, modification time and FNV-1a 64 checksum;
//! - `shard-NNN.bin`: the pixels, each image 64-byte aligned.
//!
//! Builds run on several threads, each appending to its own shard and to a journal of finished
//! entries (`shard-NNN.entries`, written after the pixels are flushed); a build killed part way
//! resumes from the journals, truncating each shard to its last journaled image.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, Record};
use super::sample::{id_key, DatasetSpec};
use crate::error::{Error, Result};
use crate::image::decode::{
    decode_scaled, max_file_bytes, read_image_file, ColorMode, Decoded, DecodedRef,
};
use crate::image::ImageRef;
use crate::storage;

pub const FORMAT: &str = "gradatim-cache";
pub const VERSION: u32 = 1;
/// Size of one `index.bin` entry.
pub const ENTRY_BYTES: usize = 72;
const ALIGN: u64 = 64;
const PRESENT: u32 = 1;
const WIDE: u32 = 2;

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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    manifest: String,
    records: usize,
    /// FNV-1a 64 of the record ids in order, hex.
    fingerprint: String,
    settings: CacheSettings,
    /// Records whose image could not be decoded (not cached), with the reason.
    failed: Vec<(usize, String)>,
    bytes: u64,
    build_seconds: f64,
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
}

impl Entry {
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
        b
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
        }
    }
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

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

/// A finished cache, memory-mapped.
pub struct Cache {
    pub dir: PathBuf,
    header: Header,
    index: Mmap,
    shards: Vec<Mmap>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({})", self.dir.display())
    }
}

/// A cached image, borrowed from the memory map, with the decoder's scale denominator.
pub struct CachedImage<'a> {
    pub image: DecodedRef<'a>,
    pub denom: usize,
}

impl Cache {
    /// Open the cache in `dir`; an unfinished or foreign folder is an error saying so.
    pub fn open(dir: &Path) -> Result<Cache> {
        let head_path = dir.join("cache.json");
        let text = std::fs::read_to_string(&head_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && dir.join("build.json").exists() {
                Error::invalid(format!(
                    "{} holds an unfinished cache build (run `gradatim cache build` again to \
                     finish it)",
                    dir.display()
                ))
            } else {
                io(&head_path)(e)
            }
        })?;
        let header: Header = serde_json::from_str(&text)
            .map_err(|e| Error::decode(&head_path.display().to_string(), e.to_string()))?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(Error::invalid(format!(
                "{} is not a gradatim cache of version {VERSION} (format {:?}, version {})",
                dir.display(),
                header.format,
                header.version
            )));
        }
        let map = |p: &Path| -> Result<Mmap> {
            let f = File::open(p).map_err(io(p))?;
            // SAFETY: the cache's files are written once, by a finished build, and only read
            // afterwards; a file changed under the map is outside this contract (documented).
            unsafe { Mmap::map(&f) }.map_err(io(p))
        };
        let index = map(&dir.join("index.bin"))?;
        if index.len() != header.records * ENTRY_BYTES {
            return Err(Error::decode(
                &dir.join("index.bin").display().to_string(),
                format!(
                    "{} bytes, not {} entries of {ENTRY_BYTES}",
                    index.len(),
                    header.records
                ),
            ));
        }
        let mut shards = Vec::new();
        let mut k = 0;
        loop {
            let p = dir.join(format!("shard-{k:03}.bin"));
            if !p.exists() {
                break;
            }
            shards.push(map(&p)?);
            k += 1;
        }
        Ok(Cache {
            dir: dir.to_path_buf(),
            header,
            index,
            shards,
        })
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
        let at = index.checked_mul(ENTRY_BYTES)?;
        self.index.get(at..at + ENTRY_BYTES).map(Entry::from_bytes)
    }

    /// Record `index`'s cached image: `Ok(None)` when the build could not decode it; an error
    /// when the entry belongs to another record or the local source file changed since the build
    /// (size or modification time).
    pub fn get(&self, index: usize, record: &Record) -> Result<Option<CachedImage<'_>>> {
        let name = record.image.display().to_string();
        let e = self
            .entry(index)
            .ok_or_else(|| Error::invalid(format!("the cache has no entry {index}")))?;
        if e.flags & PRESENT == 0 {
            return Ok(None);
        }
        if e.key != id_key(&record.id) {
            return Err(Error::decode(
                &name,
                format!("the cache's entry {index} belongs to another record id"),
            ));
        }
        let remote = record.image.to_str().is_some_and(storage::is_remote);
        if !remote && source_stamp(&record.image) != Some((e.source_size, e.source_mtime_ns)) {
            return Err(Error::decode(
                &name,
                format!(
                    "the file changed since the cache in {} was built (size or modification \
                     time); rebuild the cache",
                    self.dir.display()
                ),
            ));
        }
        let bytes = self
            .shards
            .get(e.shard as usize)
            .and_then(|s| s.get(e.offset as usize..(e.offset + e.len) as usize))
            .ok_or_else(|| Error::decode(&name, "the cache's shard is shorter than its index"))?;
        let (width, height, channels) = (e.width as usize, e.height as usize, e.channels as usize);
        let samples = width * height * channels;
        let image = if e.flags & WIDE != 0 {
            // SAFETY: u16 has no invalid bit patterns; offsets are 64-byte aligned in a
            // page-aligned map, so `head` is empty (checked).
            let (head, words, _) = unsafe { bytes.align_to::<u16>() };
            if !head.is_empty() || words.len() != samples {
                return Err(Error::decode(&name, "a misaligned or short cache entry"));
            }
            DecodedRef::U16(ImageRef {
                width,
                height,
                channels,
                data: words,
            })
        } else {
            if bytes.len() != samples {
                return Err(Error::decode(&name, "a short cache entry"));
            }
            DecodedRef::U8(ImageRef {
                width,
                height,
                channels,
                data: bytes,
            })
        };
        Ok(Some(CachedImage {
            image,
            denom: e.denom as usize,
        }))
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

fn shard_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(format!("shard-{k:03}.bin"))
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
    let entry = Entry {
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
    let settings = CacheSettings::of(spec);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        manifest: spec.manifest.name.clone(),
        records,
        fingerprint: fingerprint(&spec.manifest),
        settings,
        failed: Vec::new(),
        bytes: 0,
        build_seconds: 0.0,
    };
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
        });
    }
    // the unfinished build's settings: a resume must be of the same build
    let marker = dir.join("build.json");
    let plan = serde_json::to_string_pretty(&header).map_err(|e| Error::invalid(e.to_string()))?;
    if let Ok(old) = std::fs::read_to_string(&marker) {
        let old: Header = serde_json::from_str(&old)
            .map_err(|e| Error::decode(&marker.display().to_string(), e.to_string()))?;
        if old.fingerprint != header.fingerprint || old.settings != header.settings {
            return Err(Error::invalid(format!(
                "{} holds an unfinished build for another manifest or other settings; remove \
                 the folder or build elsewhere",
                dir.display()
            )));
        }
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
    })
}

/// A cache to read from, shared by a data set's workers.
pub type SharedCache = Arc<Cache>;
