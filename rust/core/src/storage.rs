//! Where the bytes of an image or a manifest come from: a local file, or an object in a store
//! named by a URL - `s3://bucket/key`, `gs://bucket/key`, `az://container/key`,
//! `http(s)://host/path` - read with Apache Arrow's `object_store` client. `file://` URLs are
//! local files.
//!
//! Credentials and endpoints come from each service's standard environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`, ...), as the services' own tools read them. Requests run on one
//! small tokio runtime per process behind a blocking API, at most [`RemoteOptions::in_flight`] at
//! once; each has a timeout and transient failures (5xx, timeouts, refused connections) are retried
//! with exponential backoff by the client. A request that still fails is an [`Error::Remote`]
//! naming the URL, which a data set's `on_error` handles like any other sample error.
//!
//! [`prefetch`] starts a read without waiting for it: the loader starts the reads of a batch when
//! the batch is submitted (a few batches ahead), so the latency of the store overlaps decoding.
//! [`prefetch_range`] does the same for a byte range of an object (a cache's shard), and
//! [`upload_file`] / [`write`] put objects (a cache built for a store): one `PUT` up to
//! [`PART_BYTES`], a multipart upload of `PART_BYTES` parts above.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// The URL schemes read from object stores (`file://` is read as a local path).
pub const REMOTE_SCHEMES: [&str; 5] = ["s3", "gs", "az", "http", "https"];

/// Whether `location` is a URL of a store gradatim reads (`s3://`, `gs://`, `az://`, `http://`,
/// `https://`) rather than a local path. `file://` URLs are local paths (see [`local_path`]).
pub fn is_remote(location: &str) -> bool {
    location
        .split_once("://")
        .is_some_and(|(scheme, _)| REMOTE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// The local path of a `file://` URL (percent-decoded); any other string as a path.
pub fn local_path(location: &str) -> Result<PathBuf> {
    if !location.starts_with("file://") {
        return Ok(PathBuf::from(location));
    }
    url::Url::parse(location)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| Error::invalid(format!("{location:?} is not a valid file:// URL")))
}

/// How remote reads behave; read once per process from the environment:
/// `GRADATIM_REMOTE_IN_FLIGHT` (default 64), `GRADATIM_REMOTE_TIMEOUT_S` (per request, default
/// 30), `GRADATIM_REMOTE_RETRIES` (default 10; backoff from 50 ms doubling to at most 5 s, and
/// no retry later than 120 s after the first try).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RemoteOptions {
    pub in_flight: usize,
    pub timeout: Duration,
    pub retries: usize,
}

impl RemoteOptions {
    fn from_env() -> RemoteOptions {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        RemoteOptions {
            in_flight: var("GRADATIM_REMOTE_IN_FLIGHT").map_or(64, |v| v.max(1.0) as usize),
            timeout: Duration::from_secs_f64(
                var("GRADATIM_REMOTE_TIMEOUT_S").map_or(30.0, |v| v.max(0.001)),
            ),
            retries: var("GRADATIM_REMOTE_RETRIES").map_or(10, |v| v.max(0.0) as usize),
        }
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: self.retries,
            retry_timeout: Duration::from_secs(120),
        }
    }
}

struct Client {
    runtime: Runtime,
    options: RemoteOptions,
    in_flight: Arc<Semaphore>,
    /// One store per scheme + bucket (or host), built on first use.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

fn client() -> Result<&'static Client> {
    static CLIENT: OnceLock<std::result::Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // TLS through ring (a process may have installed a provider already: keep it)
            let _ = rustls::crypto::ring::default_provider().install_default();
            let options = RemoteOptions::from_env();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("gradatim-io")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
            Ok(Client {
                runtime,
                options,
                in_flight: Arc::new(Semaphore::new(options.in_flight)),
                stores: Mutex::new(HashMap::new()),
            })
        })
        .as_ref()
        .map_err(|e| Error::invalid(e.clone()))
}

fn remote_error(url: &str, reason: impl Into<String>, not_found: bool) -> Error {
    Error::Remote {
        url: url.to_string(),
        reason: reason.into(),
        not_found,
    }
}

/// The store holding `url` and the object's path in it.
fn store_for(client: &Client, url: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let parsed = url::Url::parse(url).map_err(|e| remote_error(url, e.to_string(), false))?;
    let scheme = parsed.scheme().to_ascii_lowercase();
    let host = parsed.host_str().unwrap_or_default();
    let base = match parsed.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };
    // a store is built once per bucket and endpoint (tests and proxies change the endpoint)
    let endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AZURE_STORAGE_ENDPOINT"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .collect::<Vec<_>>()
        .join(",");
    let key = format!("{base} {endpoint}");
    let path = ObjectPath::from_url_path(parsed.path())
        .map_err(|e| remote_error(url, e.to_string(), false))?;
    let mut stores = client.stores.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(store) = stores.get(&key) {
        return Ok((store.clone(), path));
    }
    let opts = client.options;
    let timeout = format!("{}ms", opts.timeout.as_millis().max(1));
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> =
        match scheme.as_str() {
            "s3" => {
                use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as K};
                AmazonS3Builder::from_env()
                    .with_url(base.as_str())
                    .with_config(K::Client(object_store::ClientConfigKey::Timeout), &timeout)
                    .with_retry(opts.retry())
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            "gs" => {
                use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey as K};
                GoogleCloudStorageBuilder::from_env()
                    .with_url(base.as_str())
                    .with_config(K::Client(object_store::ClientConfigKey::Timeout), &timeout)
                    .with_retry(opts.retry())
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            "az" => {
                use object_store::azure::{AzureConfigKey as K, MicrosoftAzureBuilder};
                MicrosoftAzureBuilder::from_env()
                    .with_url(base.as_str())
                    .with_config(K::Client(object_store::ClientConfigKey::Timeout), &timeout)
                    .with_retry(opts.retry())
                    .build()
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            "http" | "https" => object_store::http::HttpBuilder::new()
                .with_url(base.as_str())
                .with_config(object_store::ClientConfigKey::Timeout, &timeout)
                .with_config(object_store::ClientConfigKey::AllowHttp, "true")
                .with_retry(opts.retry())
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            other => {
                return Err(remote_error(
                    url,
                    format!("unsupported URL scheme {other:?} (s3, gs, az, http, https, file)"),
                    false,
                ))
            }
        };
    let store =
        built.map_err(|e| remote_error(url, format!("cannot open the store: {e}"), false))?;
    stores.insert(key, store.clone());
    Ok((store, path))
}

async fn get(client: &'static Client, url: String, limit: u64) -> Result<Vec<u8>> {
    let (store, path) = store_for(client, &url)?;
    let _permit = client
        .in_flight
        .acquire()
        .await
        .map_err(|e| remote_error(&url, e.to_string(), false))?;
    // the client retries each request; a body cut off mid-transfer (a server going away) is
    // retried here, the whole read again, a few times
    let mut attempt = 0;
    loop {
        let result = match store.get(&path).await {
            Ok(result) => result,
            Err(e) => {
                let not_found = matches!(e, object_store::Error::NotFound { .. });
                return Err(remote_error(&url, e.to_string(), not_found));
            }
        };
        if result.meta.size > limit {
            return Err(Error::decode(
                &url,
                format!(
                    "the object is {} bytes, more than the limit of {limit} (raise max_bytes \
                     to allow it)",
                    result.meta.size
                ),
            ));
        }
        match result.bytes().await {
            Ok(bytes) => return Ok(bytes.to_vec()),
            Err(e) if attempt >= BODY_RETRIES => {
                return Err(remote_error(&url, e.to_string(), false))
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
}

/// Reads whose body failed mid-transfer are started again this many times.
const BODY_RETRIES: u32 = 3;

/// Read the object at `url` (at most `limit` bytes), waiting for it.
pub fn read_remote(url: &str, limit: u64) -> Result<Vec<u8>> {
    prefetch(url, limit)?.wait()
}

/// A read started by [`prefetch`]; dropping it cancels the read.
pub struct Pending {
    url: String,
    task: Option<tokio::task::JoinHandle<Result<Vec<u8>>>>,
}

impl Pending {
    /// Wait for the read's bytes.
    pub fn wait(mut self) -> Result<Vec<u8>> {
        let client = client()?;
        let task = self.task.take().expect("a pending read is waited on once");
        client.runtime.block_on(task).unwrap_or_else(|e| {
            Err(remote_error(
                &self.url,
                format!("the read failed: {e}"),
                false,
            ))
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Start reading the object at `url` (at most `limit` bytes) in the background.
pub fn prefetch(url: &str, limit: u64) -> Result<Pending> {
    let client = client()?;
    let task = client.runtime.spawn(get(client, url.to_string(), limit));
    Ok(Pending {
        url: url.to_string(),
        task: Some(task),
    })
}

/// `bytes 64..192` of an object, as errors name a range (end exclusive).
pub fn range_label(range: &Range<u64>) -> String {
    format!("bytes {}..{}", range.start, range.end)
}

async fn get_range(client: &'static Client, url: String, range: Range<u64>) -> Result<Vec<u8>> {
    let (store, path) = store_for(client, &url)?;
    let _permit = client
        .in_flight
        .acquire()
        .await
        .map_err(|e| remote_error(&url, e.to_string(), false))?;
    let label = range_label(&range);
    // the client retries the request, and a body cut off mid-transfer, itself
    match store.get_range(&path, range.clone()).await {
        Ok(bytes) if bytes.len() as u64 == range.end - range.start => Ok(Vec::from(bytes)),
        Ok(bytes) => Err(remote_error(
            &url,
            format!(
                "{label}: the store answered {} bytes (the object is shorter)",
                bytes.len()
            ),
            false,
        )),
        Err(e) => {
            let not_found = matches!(e, object_store::Error::NotFound { .. });
            Err(remote_error(&url, format!("{label}: {e}"), not_found))
        }
    }
}

/// Start reading exactly bytes `range` of the object at `url` (one ranged `GET`) in the
/// background; an answer of another length is an error naming the URL and the range.
pub fn prefetch_range(url: &str, range: Range<u64>) -> Result<Pending> {
    let client = client()?;
    let task = client
        .runtime
        .spawn(get_range(client, url.to_string(), range));
    Ok(Pending {
        url: url.to_string(),
        task: Some(task),
    })
}

/// Objects larger than this are uploaded in parts of this size (stores take parts of 5 MiB and
/// more); smaller ones with one `PUT`.
pub const PART_BYTES: usize = 8 << 20;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 4;

fn write_error(url: &str, reason: impl Into<String>) -> Error {
    Error::RemoteWrite {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// Run `work` (requests to the store holding `url`) on the I/O runtime, holding one of the
/// in-flight slots, and wait for it.
fn blocking<T>(
    url: &str,
    work: impl AsyncFnOnce(&Arc<dyn ObjectStore>, &ObjectPath) -> Result<T>,
) -> Result<T> {
    let client = client()?;
    let (store, path) = store_for(client, url)?;
    client.runtime.block_on(async {
        let _permit = client
            .in_flight
            .acquire()
            .await
            .map_err(|e| remote_error(url, e.to_string(), false))?;
        work(&store, &path).await
    })
}

/// The size of the object at `url`, `None` when there is no such object.
pub fn size_of(url: &str) -> Result<Option<u64>> {
    blocking(url, async |store, path| match store.head(path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(remote_error(url, e.to_string(), false)),
    })
}

/// Write `bytes` as the object at `url` (one `PUT`, replacing any object there).
pub fn write(url: &str, bytes: Vec<u8>) -> Result<()> {
    blocking(url, async |store, path| {
        store
            .put(path, bytes.into())
            .await
            .map(drop)
            .map_err(|e| write_error(url, e.to_string()))
    })
}

/// Remove the object at `url` (no error when there is none).
pub fn delete(url: &str) -> Result<()> {
    blocking(url, async |store, path| match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(write_error(url, e.to_string())),
    })
}

/// How many parts of [`PART_BYTES`] an upload of `size` bytes takes (0: one plain `PUT`).
pub fn parts(size: u64) -> u64 {
    if size <= PART_BYTES as u64 {
        0
    } else {
        size.div_ceil(PART_BYTES as u64)
    }
}

/// Upload the local file `file` as the object at `url` (replacing any object there): one `PUT`
/// up to [`PART_BYTES`], else a multipart upload of `PART_BYTES` parts, a few in flight, read
/// from the file as they go. Setting `stop` aborts a multipart upload between parts. Returns the
/// bytes uploaded.
pub fn upload_file(file: &Path, url: &str, stop: &AtomicBool) -> Result<u64> {
    let io = |source| Error::Io {
        name: file.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(file).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if parts(size) == 0 {
        let mut bytes = Vec::with_capacity(size as usize);
        f.read_to_end(&mut bytes).map_err(io)?;
        write(url, bytes)?;
        return Ok(size);
    }
    let failed = |e: object_store::Error| write_error(url, e.to_string());
    blocking(url, async |store, path| {
        let upload = store.put_multipart(path).await.map_err(failed)?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut left = size;
        while left > 0 {
            if stop.load(Ordering::Relaxed) {
                let _ = parts.abort().await;
                return Err(write_error(url, "the upload was stopped"));
            }
            if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                let _ = parts.abort().await;
                return Err(failed(e));
            }
            // read on this thread (the runtime's workers carry the parts already sent)
            let mut chunk = vec![0; left.min(PART_BYTES as u64) as usize];
            if let Err(e) = f.read_exact(&mut chunk) {
                let _ = parts.abort().await;
                return Err(io(e));
            }
            left -= chunk.len() as u64;
            parts.put(chunk.into());
        }
        parts.finish().await.map(drop).map_err(failed)
    })?;
    Ok(size)
}

/// The bytes of an image or manifest: an object store URL is read remotely, anything else (a
/// path or a `file://` URL) with `read_file`.
pub fn read_bytes(
    location: &Path,
    limit: u64,
    read_file: impl FnOnce(&Path) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    match location.to_str() {
        Some(s) if is_remote(s) => read_remote(s, limit),
        Some(s) if s.starts_with("file://") => read_file(&local_path(s)?),
        _ => read_file(location),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        for url in [
            "s3://b/k.jpg",
            "GS://b/k",
            "az://c/k",
            "http://h:9/x",
            "https://h/x",
        ] {
            assert!(is_remote(url), "{url}");
        }
        for path in [
            "a/b.jpg",
            "/data/x.png",
            "file:///data/x.png",
            "c:\\x.png",
            "s3:/b",
        ] {
            assert!(!is_remote(path), "{path}");
        }
        assert_eq!(
            local_path("file:///data/a%20b.png").unwrap(),
            PathBuf::from("/data/a b.png")
        );
        assert_eq!(local_path("x/y.png").unwrap(), PathBuf::from("x/y.png"));
    }

    #[test]
    fn stores_are_keyed_by_host_and_paths_taken_from_the_url() {
        let client = client().unwrap();
        let (_, path) = store_for(client, "http://127.0.0.1:9/a/b%20c.jpg").unwrap();
        assert_eq!(path.as_ref(), "a/b c.jpg");
        let e = store_for(client, "ftp://h/x").err().unwrap().to_string();
        assert!(
            e.contains("ftp://h/x") && e.contains("unsupported URL scheme"),
            "{e}"
        );
    }

    #[test]
    fn uploads_take_parts_above_the_part_size() {
        assert_eq!(parts(0), 0);
        assert_eq!(parts(PART_BYTES as u64), 0);
        assert_eq!(parts(PART_BYTES as u64 + 1), 2);
        assert_eq!(parts(3 * PART_BYTES as u64), 3);
        assert_eq!(range_label(&(64..192)), "bytes 64..192");
    }

    #[test]
    fn a_refused_connection_is_an_error_naming_the_url() {
        // nothing listens on port 9 of loopback; the error comes after the client's retries
        let e = read_remote("http://127.0.0.1:9/x.jpg", 1 << 20).unwrap_err();
        assert!(matches!(e, Error::Remote { .. }), "{e}");
        assert!(e.to_string().contains("http://127.0.0.1:9/x.jpg"), "{e}");
    }
}
