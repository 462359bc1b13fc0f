//! The local file system store: `LocalFileSystem`, except that a large
//! object written whole (a base file) bypasses the kernel's page cache.
//!
//! A base file is written once and not read again until a later commit
//! rewrites its file group. Written through the page cache, every byte is
//! copied into newly allocated cache pages, and on a virtual machine that
//! copy costs more CPU than snappy-compressing the file: on the 2-core build
//! VM, `dd` of 1.2 GB took 2.7 s of system time buffered against 0.12 s with
//! `O_DIRECT` (0.83 s wall), and in the lake benchmark the buffered copy was
//! the largest single item of the profile (`copy_folio_from_iter_atomic`,
//! 18% of the CPU of a commit).
//!
//! The write protocol is `LocalFileSystem`'s, so both can share a lake: the
//! bytes go to a staging file `<name>#<n>` beside the target, which is
//! renamed over it, so no reader sees a partial object and a listing skips
//! the staging file. Where the file system refuses `O_DIRECT` (tmpfs, some
//! network file systems) the same file is written through the cache.
//! Neither path calls `fsync`, like `LocalFileSystem`: commits are ordered
//! by the timeline, not by durability of the disk cache.
//!
//! Everything else (small objects, put-if-absent, reads, listings, deletes)
//! is delegated to `LocalFileSystem`.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

/// Objects at least this large, written whole, skip the page cache.
pub const DIRECT_MIN_BYTES: usize = 1024 * 1024;
/// Alignment of buffers, offsets and lengths for `O_DIRECT`: the largest
/// logical block size in use (4 KiB covers 512-byte devices too).
pub const BLOCK: usize = 4096;
/// Bytes from `at` to the next block boundary (0 on one).
pub fn to_block(at: *const u8) -> usize {
    at.addr().wrapping_neg() % BLOCK
}

/// Bytes copied into the aligned buffer per `write`.
const CHUNK: usize = 4 * 1024 * 1024;

/// A lake directory on the local file system.
#[derive(Debug)]
pub struct LocalLake {
    fs: LocalFileSystem,
    root: PathBuf,
    /// Try `O_DIRECT` first (off only in tests of the buffered path).
    direct: bool,
}

impl LocalLake {
    /// The store rooted at `dir`, which must exist.
    pub fn new(dir: &std::path::Path) -> Result<Self, object_store::Error> {
        let fs = LocalFileSystem::new_with_prefix(dir)?;
        let root = std::fs::canonicalize(dir).map_err(|e| generic(e.into()))?;
        Ok(Self {
            fs,
            root,
            direct: true,
        })
    }

    /// Where `location` is on disk, for the locations this store writes
    /// itself: plain names only, so the mapping is the one
    /// `LocalFileSystem` uses (no character it would escape or reject).
    fn file_of(&self, location: &Path) -> Option<PathBuf> {
        let name = location.as_ref();
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"._=-/".contains(&b);
        let dotted = location.parts().any(|p| matches!(p.as_ref(), "." | ".."));
        (!name.is_empty() && name.bytes().all(plain) && !dotted).then(|| self.root.join(name))
    }
}

impl std::fmt::Display for LocalLake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalLake({})", self.root.display())
    }
}

fn generic(source: Box<dyn std::error::Error + Send + Sync>) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalLake",
        source,
    }
}

/// Writes `payload` to `target` through a staging file renamed into place.
async fn write_whole(
    target: PathBuf,
    payload: PutPayload,
    direct: bool,
) -> object_store::Result<PutResult> {
    let meta = tokio::task::spawn_blocking(move || {
        write_file(&target, &payload, direct)
            .map_err(|e| generic(format!("cannot write {}: {e}", target.display()).into()))
    })
    .await
    .map_err(|e| generic(e.into()))??;
    Ok(PutResult {
        e_tag: Some(e_tag(&meta)),
        version: None,
    })
}

/// The entity tag `LocalFileSystem` gives the same file, so a later `head`
/// agrees with what the put returned.
fn e_tag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("{:x}-{:x}-{:x}", meta.ino(), mtime, meta.len())
}

fn write_file(
    target: &std::path::Path,
    payload: &PutPayload,
    direct: bool,
) -> io::Result<std::fs::Metadata> {
    let (mut file, staging, direct) = create_staging(target, direct)?;
    let mut written = if direct {
        write_direct(&mut file, payload).map(|_staged| ())
    } else {
        write_buffered(&mut file, payload)
    };
    if direct && matches!(&written, Err(e) if e.kind() == ErrorKind::InvalidInput) {
        // The file system took the O_DIRECT open but not the write.
        written = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&staging)
            .and_then(|buffered| {
                file = buffered;
                write_buffered(&mut file, payload)
            });
    }
    let published = written.and_then(|()| file.metadata()).and_then(|meta| {
        drop(file);
        std::fs::rename(&staging, target).map(|()| meta)
    });
    if published.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    published
}

/// Opens a new staging file beside `target`, with `O_DIRECT` if `direct`
/// and the file system takes it (the flag returned says which).
fn create_staging(target: &std::path::Path, direct: bool) -> io::Result<(File, PathBuf, bool)> {
    let mut attempt = 1u32;
    let mut direct = direct;
    let mut made_parent = false;
    loop {
        let mut staging = target.as_os_str().to_owned();
        staging.push(format!("#{attempt}"));
        let staging = PathBuf::from(staging);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        match options.open(&staging) {
            Ok(file) => return Ok((file, staging, direct)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => attempt += 1,
            Err(e) if e.kind() == ErrorKind::InvalidInput && direct => {
                // Linux creates the file before it finds the file system
                // cannot do direct I/O: that file is ours, take it away and
                // retry the same name buffered.
                let _ = std::fs::remove_file(&staging);
                direct = false;
            }
            Err(e) if e.kind() == ErrorKind::NotFound && !made_parent => match target.parent() {
                Some(dir) => {
                    std::fs::create_dir_all(dir)?;
                    made_parent = true;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

fn write_buffered(file: &mut File, payload: &PutPayload) -> io::Result<()> {
    payload.iter().try_for_each(|part| file.write_all(part))
}

thread_local! {
    /// One aligned buffer per blocking thread, reused across files so its
    /// pages are touched once.
    static ALIGNED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes whole blocks of the payload in place where they are aligned, and
/// the rest in block-aligned chunks from an aligned buffer; the last chunk
/// is padded with zeros to a whole block and the file cut back to its
/// length. Returns how many bytes went through the buffer.
fn write_direct(file: &mut File, payload: &PutPayload) -> io::Result<usize> {
    ALIGNED.with_borrow_mut(|buffer| {
        if buffer.len() < CHUNK + BLOCK {
            *buffer = vec![0; CHUNK + BLOCK];
        }
        let start = to_block(buffer.as_ptr());
        let chunk = buffer
            .get_mut(start..start + CHUNK)
            .ok_or_else(|| io::Error::other("aligned buffer too short"))?;
        let mut filled = 0;
        let mut staged = 0;
        for part in payload.iter() {
            let mut rest: &[u8] = part;
            // Whole blocks of a part that starts on a block boundary, when
            // the file is at one too, are written in place: an encoded base
            // file starts on one (`files::encode_rows`).
            if filled == 0 && rest.as_ptr().addr().is_multiple_of(BLOCK) {
                let (blocks, tail) = rest.split_at(rest.len() - rest.len() % BLOCK);
                if !blocks.is_empty() {
                    file.write_all(blocks)?;
                }
                rest = tail;
            }
            while !rest.is_empty() {
                let free = chunk.get_mut(filled..).unwrap_or_default();
                let n = free.len().min(rest.len());
                let (now, later) = rest.split_at(n);
                free.get_mut(..n).unwrap_or_default().copy_from_slice(now);
                filled += n;
                staged += n;
                rest = later;
                if filled == CHUNK {
                    file.write_all(chunk)?;
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            let padded = filled.next_multiple_of(BLOCK);
            let tail = chunk.get_mut(..padded).unwrap_or_default();
            tail.get_mut(filled..).unwrap_or_default().fill(0);
            file.write_all(tail)?;
        }
        file.set_len(payload.content_length() as u64)?;
        Ok(staged)
    })
}

/// A multipart upload to a path this store writes itself: the parts are
/// kept (they are slices of the caller's buffer) and written whole on
/// completion, which is when `LocalFileSystem` would publish them too.
#[derive(Debug)]
struct WholeUpload {
    target: PathBuf,
    /// `None` once completed or aborted.
    parts: Option<Vec<Bytes>>,
    direct: bool,
}

impl WholeUpload {
    /// A part or completion after the upload completed or was aborted.
    fn ended(&self) -> object_store::Error {
        generic(
            format!(
                "the upload to {} was already completed or aborted",
                self.target.display()
            )
            .into(),
        )
    }
}

#[async_trait]
impl MultipartUpload for WholeUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let added = match &mut self.parts {
            Some(parts) => {
                parts.extend(data.iter().cloned());
                Ok(())
            }
            None => Err(self.ended()),
        };
        Box::pin(futures::future::ready(added))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let parts = self.parts.take().ok_or_else(|| self.ended())?;
        let payload: PutPayload = parts.into_iter().collect();
        write_whole(self.target.clone(), payload, self.direct).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.parts = None;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for LocalLake {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let whole = matches!(opts.mode, PutMode::Overwrite)
            && opts.attributes.is_empty()
            && payload.content_length() >= DIRECT_MIN_BYTES;
        match self.file_of(location).filter(|_| whole) {
            Some(target) => write_whole(target, payload, self.direct).await,
            None => self.fs.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        match self
            .file_of(location)
            .filter(|_| opts.attributes.is_empty())
        {
            Some(target) => Ok(Box::new(WholeUpload {
                target,
                parts: Some(Vec::new()),
                direct: self.direct,
            })),
            None => self.fs.put_multipart_opts(location, opts).await,
        }
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.fs.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.fs.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.fs.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.fs.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.fs.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.fs.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.fs.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.fs.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::{ObjectStoreExt, WriteMultipart};

    use super::*;

    /// Bytes that differ at every offset, in `parts` pieces.
    fn payload(len: usize, parts: usize) -> (Vec<u8>, PutPayload) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
        let step = len.div_ceil(parts);
        let payload = bytes
            .chunks(step)
            .map(Bytes::copy_from_slice)
            .collect::<PutPayload>();
        (bytes, payload)
    }

    /// Every file under `dir`, relative, sorted: staging files included.
    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let rel = path.strip_prefix(dir).unwrap();
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    async fn read_back(dir: &std::path::Path, location: &Path) -> Vec<u8> {
        let plain = LocalFileSystem::new_with_prefix(dir).unwrap();
        plain
            .get(location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn the_temporary_directory_takes_direct_writes() {
        let disk = tempfile::tempdir().unwrap();
        let (_, staging, direct) = create_staging(&disk.path().join("a/b.parquet"), true).unwrap();
        assert!(direct, "O_DIRECT refused on {}", disk.path().display());
        assert_eq!(staging, disk.path().join("a/b.parquet#1"));
        let (_, staging, _) = create_staging(&disk.path().join("a/b.parquet"), true).unwrap();
        assert_eq!(
            staging,
            disk.path().join("a/b.parquet#2"),
            "a staging file is never reused"
        );
    }

    #[test]
    fn aligned_blocks_are_written_in_place_and_only_the_rest_is_staged() {
        let disk = tempfile::tempdir().unwrap();
        // A buffer starting on a block boundary, as `files::encode_rows`
        // makes one.
        let len = 3 * CHUNK + 5 * BLOCK + 77;
        let mut raw: Vec<u8> = Vec::with_capacity(len + BLOCK);
        let pad = to_block(raw.as_ptr());
        raw.extend((0..pad + len).map(|i| (i * 31 + i / 4093) as u8));
        let aligned = Bytes::from(raw).slice(pad..);
        assert_eq!(aligned.as_ptr().addr() % BLOCK, 0);
        let expected = aligned.to_vec();
        let cases: [(&str, Vec<Bytes>, usize); 3] = [
            // One part: everything but the last partial block in place.
            ("one part", vec![aligned.clone()], 77),
            // Parts that end on block boundaries, as multipart uploads of
            // whole-block part sizes cut them: only the tail is staged.
            (
                "block-sized parts",
                vec![
                    aligned.slice(..2 * BLOCK),
                    aligned.slice(2 * BLOCK..CHUNK + BLOCK),
                    aligned.slice(CHUNK + BLOCK..),
                ],
                77,
            ),
            // A part ending mid-block: the file is no longer on a boundary,
            // so what follows goes through the buffer, up to its end.
            (
                "a part ending mid-block",
                vec![aligned.slice(..BLOCK + 10), aligned.slice(BLOCK + 10..)],
                len - BLOCK,
            ),
        ];
        for (i, (what, parts, staged)) in cases.into_iter().enumerate() {
            let target = disk.path().join(format!("f{i}.parquet"));
            let (mut file, staging, direct) = create_staging(&target, true).unwrap();
            assert!(direct, "O_DIRECT refused on {}", disk.path().display());
            let payload: PutPayload = parts.into_iter().collect();
            assert_eq!(write_direct(&mut file, &payload).unwrap(), staged, "{what}");
            drop(file);
            assert_eq!(std::fs::read(&staging).unwrap(), expected, "{what}");
        }
    }

    #[tokio::test]
    async fn a_large_object_is_written_whole_and_reads_back_through_local_file_system() {
        // Direct and buffered, on disk and on tmpfs.
        for (dir, direct) in [
            (tempfile::tempdir().unwrap(), true),
            (tempfile::tempdir().unwrap(), false),
            (tempfile::tempdir_in("/dev/shm").unwrap(), true),
        ] {
            let mut store = LocalLake::new(dir.path()).unwrap();
            store.direct = direct;
            // Not a whole number of blocks, more than one aligned chunk,
            // arriving in pieces that straddle chunk boundaries.
            let len = 2 * CHUNK + 3 * BLOCK + 123;
            let location = Path::from("created_at_day=2024-01-01/f-0_1-2-3_20240101.parquet");
            let (bytes, body) = payload(len, 5);
            let put = store.put(&location, body).await.unwrap();
            assert_eq!(read_back(dir.path(), &location).await, bytes);
            let head = store.head(&location).await.unwrap();
            assert_eq!(head.size, len as u64);
            assert_eq!(put.e_tag, head.e_tag, "the put's entity tag is the file's");
            assert_eq!(
                files(dir.path()),
                vec![location.to_string()],
                "no staging file left"
            );

            // Overwritten with a shorter object: no stale tail.
            let (shorter, body) = payload(DIRECT_MIN_BYTES + 1, 1);
            store.put(&location, body).await.unwrap();
            assert_eq!(read_back(dir.path(), &location).await, shorter);
        }
    }

    #[tokio::test]
    async fn a_failed_write_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalLake::new(dir.path()).unwrap();
        // A file where the parent directory should be.
        std::fs::write(dir.path().join("p=1"), b"not a directory").unwrap();
        let location = Path::from("p=1/big.parquet");
        let (_, body) = payload(DIRECT_MIN_BYTES, 1);
        let err = store.put(&location, body).await.unwrap_err().to_string();
        let file = dir.path().canonicalize().unwrap().join("p=1/big.parquet");
        assert!(
            err.contains(&format!("cannot write {}", file.display())),
            "{err}"
        );
        assert_eq!(files(dir.path()), vec!["p=1".to_string()]);
    }

    #[tokio::test]
    async fn a_multipart_upload_is_published_only_when_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalLake::new(dir.path()).unwrap();
        let location = Path::from("p=1/big.parquet");
        let (bytes, _) = payload(3 * 1024 * 1024 + 17, 1);
        let upload = store.put_multipart(&location).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 1024 * 1024);
        writer.put(Bytes::from(bytes.clone()));
        assert!(
            files(dir.path()).is_empty(),
            "nothing is visible before completion"
        );
        writer.finish().await.unwrap();
        assert_eq!(read_back(dir.path(), &location).await, bytes);
        assert_eq!(files(dir.path()), vec![location.to_string()]);

        // Nothing more after completion: not a part, not an empty object.
        let mut upload = store
            .put_multipart(&Path::from("p=1/twice.parquet"))
            .await
            .unwrap();
        upload
            .put_part(PutPayload::from_static(b"x"))
            .await
            .unwrap();
        upload.complete().await.unwrap();
        assert!(
            upload
                .put_part(PutPayload::from_static(b"y"))
                .await
                .is_err()
        );
        assert!(upload.complete().await.is_err());
        assert_eq!(
            read_back(dir.path(), &Path::from("p=1/twice.parquet")).await,
            b"x"
        );
        std::fs::remove_file(dir.path().join("p=1/twice.parquet")).unwrap();

        let aborted = Path::from("p=1/aborted.parquet");
        let upload = store.put_multipart(&aborted).await.unwrap();
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 1024 * 1024);
        writer.put(Bytes::from(bytes));
        writer.abort().await.unwrap();
        assert_eq!(files(dir.path()), vec![location.to_string()]);
    }

    #[tokio::test]
    async fn small_objects_put_if_absent_and_escaped_names_stay_with_local_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalLake::new(dir.path()).unwrap();
        let commit = Path::from(".hoodie/20240101000000000.commit");
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        store
            .put_opts(&commit, PutPayload::from_static(b"{}"), create.clone())
            .await
            .unwrap();
        let again = store
            .put_opts(&commit, PutPayload::from_static(b"{ }"), create)
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "put-if-absent of an existing object must fail, got {again:?}"
        );
        assert_eq!(read_back(dir.path(), &commit).await, b"{}");

        // A name LocalFileSystem escapes on disk: written by it, read alike.
        let odd = Path::from_iter(["city=São Paulo", "a%b.parquet"]);
        let (bytes, body) = payload(DIRECT_MIN_BYTES * 2, 2);
        store.put(&odd, body).await.unwrap();
        assert_eq!(read_back(dir.path(), &odd).await, bytes);
        let listed: Vec<Path> = store
            .list(None)
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&odd) && listed.contains(&commit));
    }
}
