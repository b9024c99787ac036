//! A pre-decoded cache in an object store (`s3://bucket/prefix`, any URL [`storage`] reads):
//! the files of a local cache ([`super::cache`]) as objects under the prefix.
//!
//! **Building** decodes into a local staging folder (the ordinary, resumable local build), then
//! uploads it: first a `build.json` naming the staged build (the hash of its `cache.json`) and
//! its manifest and settings, then the shards and `index.bin`, then `cache.json` - last, since a
//! prefix without it is an unfinished build - and finally `build.json` is removed. A rerun after
//! an interrupted upload finishes it: an object already in the store is kept when the store's
//! `build.json` names the same staged build and the object's size equals the staged file's;
//! anything else is uploaded again. A prefix holding a finished cache of the same manifest and
//! settings is left as is (nothing is built); one of another build is refused.
//!
//! **Reading** fetches `cache.json` and `index.bin` when the cache is opened (the index, 80 bytes
//! per record, is checked as a local one is and kept in memory); an image's pixels are one ranged
//! read of exactly its bytes in its shard, started when the batch is submitted, and checked
//! against their checksum as a local cache's are.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

use super::cache::{
    self, check_index, fnv64, shard_name, shard_path, unfinished, BuildReport, Cache, Header,
    ENTRY_BYTES,
};
use super::sample::DatasetSpec;
use crate::error::{Error, Result};
use crate::storage::{self, Pending};

/// Largest `cache.json` or `build.json` read (the list of failed images makes it grow).
const HEADER_LIMIT: u64 = 1 << 30;

/// The URL of object `name` under the cache prefix `base` (no trailing slash).
fn object_url(base: &str, name: &str) -> String {
    format!("{base}/{name}")
}

/// The cache's bytes in a store: the index, read at open, and where the shards are.
pub(crate) struct RemoteFiles {
    base: String,
    pub(crate) index: Vec<u8>,
}

impl RemoteFiles {
    /// The URL of shard `shard`.
    pub(crate) fn shard_url(&self, shard: u32) -> String {
        object_url(&self.base, &shard_name(shard))
    }

    /// Start reading bytes `range` of shard `shard` (one ranged read).
    pub(crate) fn prefetch(&self, shard: u32, range: Range<u64>) -> Result<Pending> {
        storage::prefetch_range(&object_url(&self.base, &shard_name(shard)), range)
    }

    /// Bytes `range` of shard `shard`: the read started ahead (`prefetched`), or one started now.
    pub(crate) fn read(
        &self,
        shard: u32,
        range: Range<u64>,
        prefetched: Option<Pending>,
    ) -> Result<Vec<u8>> {
        match prefetched {
            Some(pending) => pending.wait(),
            None => self.prefetch(shard, range)?.wait(),
        }
    }
}

/// Read the cache at `url`: its `cache.json` (format and version checked) and `index.bin`.
pub(crate) fn open(url: &str) -> Result<(Header, RemoteFiles)> {
    let base = url.trim_end_matches('/').to_string();
    let head_url = object_url(&base, "cache.json");
    let text = match storage::read_remote(&head_url, HEADER_LIMIT) {
        Ok(text) => text,
        Err(Error::Remote {
            not_found: true, ..
        }) if storage::size_of(&object_url(&base, "build.json"))?.is_some() => {
            return Err(unfinished(&base))
        }
        Err(e) => return Err(e),
    };
    let text = String::from_utf8(text).map_err(|_| Error::decode(&head_url, "not UTF-8 text"))?;
    let header = Header::parse(&text, &head_url, &base)?;
    let index_url = object_url(&base, "index.bin");
    // a little more than the index should be, so a wrong size is told as such
    let limit = (header.records as u64)
        .saturating_mul(ENTRY_BYTES as u64 * 2)
        .saturating_add(4096);
    let index = storage::read_remote(&index_url, limit)?;
    check_index(&index, &header, &index_url)?;
    Ok((header, RemoteFiles { base, index }))
}

/// What an upload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UploadReport {
    /// Objects uploaded by this run (`cache.json` included).
    pub uploaded: usize,
    /// Objects an interrupted upload of the same staged build had finished, kept.
    pub kept: usize,
    /// Bytes uploaded by this run.
    pub bytes: u64,
    /// The staging folder (`None` when the store already held the finished cache).
    pub staging: Option<String>,
    /// Whether the staging folder was removed (the default one is, after the upload).
    pub staging_removed: bool,
}

/// The store's `build.json` during an upload: the plan of the build and which staged build is
/// being uploaded.
#[derive(Serialize, Deserialize)]
struct Marker {
    /// FNV-1a 64 (hex) of the staged `cache.json`.
    staged: String,
    #[serde(flatten)]
    plan: Header,
}

fn read_marker(base: &str) -> Result<Option<Marker>> {
    let url = object_url(base, "build.json");
    match storage::read_remote(&url, HEADER_LIMIT) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::decode(&url, e.to_string())),
        Err(Error::Remote {
            not_found: true, ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an object of `there` bytes (`None`: absent) may stand for a staged file of `size`
/// bytes: only one of the same staged build (`resumed`) and of the same size.
fn keep(resumed: bool, there: Option<u64>, size: u64) -> bool {
    resumed && there == Some(size)
}

/// The default staging folder of a build for `base`: in the system's temporary folder, named by
/// the URL, the manifest and the settings, so that a rerun after an interruption finds it.
fn default_staging(base: &str, plan: &Header) -> PathBuf {
    let key = fnv64(format!("{base} {}", plan.identity()).as_bytes());
    std::env::temp_dir().join(format!("gradatim-cache-{key:016x}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        name: path.display().to_string(),
        source,
    }
}

/// Upload the finished local cache in `dir` to `base` (see the module's notes for the order and
/// the resume rule).
fn upload(dir: &Path, base: &str, plan: &Header, stop: &AtomicBool) -> Result<UploadReport> {
    let head_path = dir.join("cache.json");
    let head = std::fs::read(&head_path).map_err(io(&head_path))?;
    let staged = format!("{:016x}", fnv64(&head));
    let marker_url = object_url(base, "build.json");
    let resumed = read_marker(base)?.is_some_and(|m| m.staged == staged);
    if !resumed {
        let marker = Marker {
            staged,
            plan: plan.clone(),
        };
        let text = serde_json::to_vec_pretty(&marker).map_err(|e| Error::invalid(e.to_string()))?;
        storage::write(&marker_url, text)?;
    }
    let mut names: Vec<String> = (0..)
        .take_while(|&k| shard_path(dir, k).exists())
        .map(shard_name)
        .collect();
    names.push("index.bin".into());
    let mut report = UploadReport {
        staging: Some(dir.display().to_string()),
        ..UploadReport::default()
    };
    for name in names {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::invalid(format!(
                "the upload to {base} was stopped; run the build again to finish it"
            )));
        }
        let path = dir.join(&name);
        let url = object_url(base, &name);
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        let there = if resumed {
            storage::size_of(&url)?
        } else {
            None
        };
        if keep(resumed, there, size) {
            report.kept += 1;
            continue;
        }
        report.bytes += storage::upload_file(&path, &url, stop)?;
        report.uploaded += 1;
    }
    report.bytes += head.len() as u64;
    storage::write(&object_url(base, "cache.json"), head)?;
    report.uploaded += 1;
    // the cache is finished with cache.json; a marker left behind is harmless
    let _ = storage::delete(&marker_url);
    Ok(report)
}

/// Build the cache of `spec` into a store prefix `url`: a finished cache there of the same build
/// is left as is; otherwise the build runs in `staging` (default: a folder in the system's
/// temporary folder, removed after the upload) and is uploaded.
fn build_remote(
    spec: &DatasetSpec,
    url: &str,
    staging: Option<&Path>,
    threads: usize,
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<BuildReport> {
    let base = url.trim_end_matches('/');
    let plan = Header::plan(spec);
    if storage::size_of(&object_url(base, "cache.json"))?.is_some() {
        let cache = Cache::open(Path::new(base))?;
        cache.check(spec)?;
        progress.store(plan.records, Ordering::Relaxed);
        return Ok(BuildReport {
            records: plan.records,
            decoded: 0,
            failed: cache.header.failed.clone(),
            bytes: cache.header.bytes,
            seconds: 0.0,
            upload: Some(UploadReport::default()),
        });
    }
    if let Some(marker) = read_marker(base)? {
        marker.plan.same_build(&plan, base)?;
    }
    let dir = staging.map_or_else(|| default_staging(base, &plan), Path::to_path_buf);
    let mut report = cache::build(spec, &dir, threads, progress, stop)?;
    let mut upload = upload(&dir, base, &plan, stop)?;
    if staging.is_none() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        upload.staging_removed = true;
    }
    report.upload = Some(upload);
    Ok(report)
}

/// Build the cache of `spec` at `location`: a local folder (or `file://` URL) is built in place
/// ([`cache::build`]); an object store URL is built in `staging` and uploaded. `progress` counts
/// finished records; setting `stop` ends the build (or the upload) early, resumably.
pub fn build_at(
    spec: &DatasetSpec,
    location: &Path,
    staging: Option<&Path>,
    threads: usize,
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<BuildReport> {
    match location.to_str() {
        Some(url) if storage::is_remote(url) => {
            build_remote(spec, url, staging, threads, progress, stop)
        }
        _ if staging.is_some() => Err(Error::invalid(format!(
            "a staging folder is for a cache in an object store; {} is a local folder",
            location.display()
        ))),
        Some(url) if url.starts_with("file://") => {
            cache::build(spec, &storage::local_path(url)?, threads, progress, stop)
        }
        _ => cache::build(spec, location, threads, progress, stop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_under_the_prefix() {
        assert_eq!(
            object_url("s3://b/p", &shard_name(7)),
            "s3://b/p/shard-007.bin"
        );
        assert_eq!(object_url("s3://b", "cache.json"), "s3://b/cache.json");
    }

    #[test]
    fn only_objects_of_the_same_staged_build_and_size_are_kept() {
        assert!(keep(true, Some(10), 10));
        assert!(!keep(true, Some(9), 10));
        assert!(!keep(true, None, 10));
        assert!(!keep(false, Some(10), 10)); // another (or no) staged build: upload again
    }
}
