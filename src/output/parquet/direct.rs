//! Where a Parquet file's bytes go: around the page cache for the files a run never reads back.
//!
//! A run writes its outputs once and never reads them back, yet a buffered write copies every
//! byte into the page cache and the fsync at the end writes it out from there. On these
//! machines that copy costs about 1.9 ns a byte of one core's time (1 GiB written buffered by
//! `dd` takes 1.9 s of system time, with `oflag=direct` 0.07 s): for a 10M month's half a
//! gigabyte of outputs a second of CPU taken from the settlement. [`Sink::Direct`] writes with
//! `O_DIRECT` instead: whole aligned buffers handed to a thread of the file's own that writes
//! them while the caller fills the next, so the disk's time overlaps the encoding and no byte
//! is copied by the kernel. Files a later run reads (the state's) and files on a file system
//! that refuses `O_DIRECT` (tmpfs) are buffered, their dirty pages pushed to disk after every
//! row group ([`Sink::row_group_written`]).

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The alignment `O_DIRECT` asks of a write's buffer, offset and length (a page: at least any
/// disk's logical block).
const BLOCK: usize = 4096;

/// Bytes a buffer holds before it goes to disk.
const BUFFER_BYTES: usize = 4 << 20;

/// Buffers a file may have filled and not yet written: a row group arrives as one burst of
/// tens of megabytes, which this lets the caller hand over without waiting for the disk.
const BUFFERS_IN_FLIGHT: usize = 8;

/// The destination of a [`super::PendingFile`]'s bytes.
pub(super) enum Sink {
    Direct(DirectWriter),
    Buffered(BufWriter<File>),
}

impl Sink {
    /// Creates (or truncates) `path`, written around the page cache when `around_page_cache`
    /// and its file system allows.
    pub(super) fn create(path: &Path, around_page_cache: bool) -> io::Result<Sink> {
        #[cfg(target_os = "linux")]
        if around_page_cache {
            use std::os::unix::fs::OpenOptionsExt;
            match OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(file) => return Ok(Sink::Direct(DirectWriter::new(file))),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = around_page_cache;
        Ok(Sink::Buffered(BufWriter::with_capacity(
            1 << 20,
            File::create(path)?,
        )))
    }

    /// A row group is complete: a buffered file starts writing its dirty pages to disk without
    /// waiting for them, so that the fsync at the end has little left to do (a run's files are
    /// written over many seconds, and left to the page cache would all be written then, with
    /// the cores idle). Advisory: an error only means the fsync does all the work.
    pub(super) fn row_group_written(&self) {
        #[cfg(target_os = "linux")]
        if let Sink::Buffered(writer) = self {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain system call on a descriptor the `File` owns; no memory is passed.
            unsafe {
                libc::sync_file_range(
                    writer.get_ref().as_raw_fd(),
                    0,
                    0,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
    }

    /// Writes what is left and fsyncs the file.
    pub(super) fn finish(self) -> io::Result<()> {
        match self {
            Sink::Direct(writer) => writer.finish(),
            Sink::Buffered(writer) => writer.into_inner().map_err(|e| e.into_error())?.sync_all(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Direct(writer) => writer.write(bytes),
            Sink::Buffered(writer) => writer.write(bytes),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Direct(writer) => writer.write_all(bytes),
            Sink::Buffered(writer) => writer.write_all(bytes),
        }
    }

    /// Data reaches the disk at [`Sink::finish`]; a flush before it has nothing to promise.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Direct(_) => Ok(()),
            Sink::Buffered(writer) => writer.flush(),
        }
    }
}

/// A buffer of [`BUFFER_BYTES`] aligned to [`BLOCK`], as `O_DIRECT` needs.
struct Aligned {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Aligned` owns its allocation outright, like a `Vec<u8>`.
unsafe impl Send for Aligned {}

impl Aligned {
    const LAYOUT: Layout = match Layout::from_size_align(BUFFER_BYTES, BLOCK) {
        Ok(layout) => layout,
        Err(_) => panic!("buffer layout"),
    };

    fn new() -> Aligned {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(Self::LAYOUT) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(Self::LAYOUT));
        Aligned { ptr, len: 0 }
    }

    /// The filled part.
    fn filled(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `fill` or `pad`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies as much of `bytes` as fits; returns how much that was.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(BUFFER_BYTES - self.len);
        // SAFETY: `len + n <= BUFFER_BYTES`, and `bytes` is not this allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Zeros the buffer up to the next [`BLOCK`] boundary, for the file's last write.
    fn pad(&mut self) {
        let end = self.len.div_ceil(BLOCK) * BLOCK;
        // SAFETY: `end <= BUFFER_BYTES`, a multiple of `BLOCK`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, end - self.len) };
        self.len = end;
    }

    fn is_full(&self) -> bool {
        self.len == BUFFER_BYTES
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::LAYOUT) };
    }
}

/// A file opened `O_DIRECT`, written a buffer at a time by its own thread.
pub(super) struct DirectWriter {
    file: Arc<File>,
    /// The buffer being filled; it starts at file offset `handed`.
    filling: Aligned,
    handed: u64,
    /// Buffers written and returned by the thread, for reuse.
    spare: Vec<Aligned>,
    /// Buffers allocated so far (at most [`BUFFERS_IN_FLIGHT`] + 1).
    allocated: usize,
    to_disk: Option<Sender<(Aligned, u64)>>,
    written: Receiver<io::Result<Aligned>>,
    thread: Option<JoinHandle<()>>,
}

impl DirectWriter {
    fn new(file: File) -> DirectWriter {
        let file = Arc::new(file);
        let (to_disk, to_write) = mpsc::channel::<(Aligned, u64)>();
        let (give_back, written) = mpsc::channel();
        let thread_file = Arc::clone(&file);
        let thread = std::thread::spawn(move || {
            for (buffer, offset) in to_write {
                let result = write_at(&thread_file, buffer.filled(), offset).map(|()| buffer);
                if give_back.send(result).is_err() {
                    break;
                }
            }
        });
        DirectWriter {
            file,
            filling: Aligned::new(),
            handed: 0,
            spare: Vec::new(),
            allocated: 1,
            to_disk: Some(to_disk),
            written,
            thread: Some(thread),
        }
    }

    /// Hands the full buffer to the thread and takes an empty one: a spare, a new one while
    /// fewer than [`BUFFERS_IN_FLIGHT`] are out, else the next the thread gives back.
    fn hand_over(&mut self) -> io::Result<()> {
        while let Ok(back) = self.written.try_recv() {
            self.spare.push(back?);
        }
        let mut next = match self.spare.pop() {
            Some(buffer) => buffer,
            None if self.allocated <= BUFFERS_IN_FLIGHT => {
                self.allocated += 1;
                Aligned::new()
            }
            None => self.wait_for_one()?,
        };
        next.len = 0;
        let full = std::mem::replace(&mut self.filling, next);
        let offset = self.handed;
        self.handed += full.len as u64;
        self.to_disk
            .as_ref()
            .expect("writer used after finish")
            .send((full, offset))
            .map_err(|_| io::Error::other("the file's writer thread stopped"))
    }

    fn wait_for_one(&mut self) -> io::Result<Aligned> {
        self.written
            .recv()
            .map_err(|_| io::Error::other("the file's writer thread stopped"))?
    }

    /// Waits for every buffer handed over, writes the last (padded to a block, then the file
    /// cut to its length) and fsyncs.
    fn finish(mut self) -> io::Result<()> {
        drop(self.to_disk.take());
        let out = self.allocated - 1 - self.spare.len();
        for _ in 0..out {
            let back = self.wait_for_one()?;
            self.spare.push(back);
        }
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| io::Error::other("the file's writer thread panicked"))?;
        }
        let length = self.handed + self.filling.len as u64;
        if self.filling.len > 0 {
            self.filling.pad();
            write_at(&self.file, self.filling.filled(), self.handed)?;
            self.file.set_len(length)?;
        }
        self.file.sync_all()
    }
}

impl Write for DirectWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.filling.fill(bytes);
        if self.filling.is_full() {
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectWriter {
    /// A writer dropped unfinished (an error on the way) stops its thread; the file is
    /// removed by its owner.
    fn drop(&mut self) {
        drop(self.to_disk.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes `bytes` at `offset`. A file system that takes `O_DIRECT` at open and then refuses
/// a write with it gets the file switched to buffered writes, and the write again.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    match file.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // SAFETY: plain system calls on a descriptor `file` owns; no memory is passed.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags < 0
                || flags & libc::O_DIRECT == 0
                || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0
            {
                return Err(e);
            }
            file.write_all_at(bytes, offset)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `sizes` pieces of counting bytes through a sink and reads the file back.
    fn round_trip(dir: &Path, sizes: &[usize], direct: bool) -> (Vec<u8>, Vec<u8>) {
        let path = dir.join(format!("f{}-{direct}", sizes.len()));
        let mut sink = Sink::create(&path, direct).unwrap();
        assert_eq!(
            matches!(sink, Sink::Buffered(_)),
            !direct || !takes_o_direct(dir),
            "{direct}"
        );
        let mut expected = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let piece: Vec<u8> = (0..size).map(|b| (b * 7 + i) as u8).collect();
            sink.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        sink.finish().unwrap();
        (std::fs::read(&path).unwrap(), expected)
    }

    /// Whether `dir`'s file system opens files `O_DIRECT` (tmpfs does not).
    fn takes_o_direct(dir: &Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.join("probe"))
            .is_ok()
    }

    #[test]
    fn bytes_come_back_as_written_direct_or_buffered_across_buffers_and_an_unaligned_end() {
        let dir = tempfile::tempdir().unwrap();
        for sizes in [
            vec![],
            vec![1],
            vec![BLOCK],
            vec![BUFFER_BYTES],
            vec![BUFFER_BYTES - 1, 2, BLOCK + 3],
            // More buffers than may be in flight, so the writer waits for the thread.
            vec![3 * BUFFER_BYTES + 5; 4],
        ] {
            for direct in [true, false] {
                let (read, expected) = round_trip(dir.path(), &sizes, direct);
                assert_eq!(read.len(), expected.len(), "{sizes:?} {direct}");
                assert!(read == expected, "bytes differ for {sizes:?} {direct}");
            }
        }
    }
}
