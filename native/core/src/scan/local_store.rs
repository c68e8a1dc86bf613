//! Local files read on the thread that asks for them.
//!
//! `object_store`'s `LocalFileSystem` hands every read to Tokio's blocking pool, and the
//! asking thread parks until it is done: a Spark task thread, which drives its plan with
//! `block_on`, thus waits for a thread switch (two for a single range: open, then read) at
//! every column chunk it reads, while its core idles. Reads of byte ranges here are plain
//! positioned reads on the calling thread instead (of files the page cache mostly holds);
//! everything else (listing, metadata, writes, reads with conditions) is `LocalFileSystem`'s.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, Result,
};

/// [`LocalFileSystem`] with byte ranges read synchronously (see the module's documentation).
#[derive(Debug, Default)]
pub struct LocalFileStore {
    inner: LocalFileSystem,
}

impl LocalFileStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn open(&self, location: &Path) -> Result<(File, std::path::PathBuf)> {
        let path = self.inner.path_to_filesystem(location)?;
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        Ok((file, path))
    }
}

impl fmt::Display for LocalFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalFileStore({})", self.inner)
    }
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> object_store::Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: path.display().to_string(),
            source: Box::new(source),
        }
    } else {
        generic(source)
    }
}

fn generic(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileStore",
        source: source.into(),
    }
}

/// `range` of `file`, all of it: a short read (the file shrank) is an error, never a
/// truncated result.
fn read_range(file: &File, path: &std::path::Path, range: Range<u64>) -> Result<Bytes> {
    let len = usize::try_from(range.end.saturating_sub(range.start)).map_err(generic)?;
    let mut buffer = vec![0; len];
    file.read_exact_at(&mut buffer, range.start)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => generic(format!(
                "{} ends before byte {} (a truncated or changed file)",
                path.display(),
                range.end
            )),
            _ => io_error(path, e),
        })?;
    Ok(Bytes::from(buffer))
}

/// Whether `options` ask for a plain byte range, without conditions, versions or `head`.
fn plain_range(options: &GetOptions) -> Option<Range<u64>> {
    let unconditional = options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head;
    match &options.range {
        Some(GetRange::Bounded(range)) if unconditional && range.start < range.end => {
            Some(range.clone())
        }
        _ => None,
    }
}

#[async_trait]
impl ObjectStore for LocalFileStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let Some(range) = plain_range(&options) else {
            return self.inner.get_opts(location, options).await;
        };
        let (file, path) = self.open(location)?;
        let metadata = file.metadata().map_err(|e| io_error(&path, e))?;
        if range.end > metadata.len() {
            // Past the end: LocalFileSystem's answer (an error, or the range cut at the end).
            return self.inner.get_opts(location, options).await;
        }
        let bytes = read_range(&file, &path, range.clone())?;
        let last_modified = metadata
            .modified()
            .map(DateTime::<Utc>::from)
            .unwrap_or_default();
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified,
            size: metadata.len(),
            e_tag: None,
            version: None,
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream::once(async { Ok(bytes) }).boxed()),
            attributes: Attributes::default(),
            range,
            meta,
        })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (file, path) = self.open(location)?;
        ranges
            .iter()
            .map(|range| read_range(&file, &path, range.clone()))
            .collect()
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
