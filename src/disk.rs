//! Writing around the page cache: for the files a run never reads back (its outputs) and those
//! it reads back once, soon, in pieces it knows (its spill).
//!
//! A run writes its outputs once and never reads them back, yet a buffered write copies every
//! byte into the page cache and the fsync at the end writes it out from there. On these
//! machines that copy costs about 1.9 ns a byte of one core's time (1 GiB written buffered by
//! `dd` takes 1.9 s of system time, with `oflag=direct` 0.07 s): for a 10M month's half a
//! gigabyte of outputs a second of CPU taken from the settlement. An output file is
//! written `O_DIRECT` instead: whole aligned buffers handed to a thread of the file's own that
//! writes them while the caller fills the next, so the disk's time overlaps the encoding and
//! no byte is copied by the kernel. Files a later run reads (the state's) and files on a file system
//! that refuses `O_DIRECT` (tmpfs) are buffered, their dirty pages pushed to disk after every
//! row group ([`Sink::row_group_written`]).
//!
//! A large spill is written the same way (`spill_around_page_cache`): buffered, the 100M
//! month's 10.7 GB of spill cost 17 s of CPU time in the kernel's copy into the page cache
//! alone. Both go through one mechanism: an [`Appender`] per file gathers its bytes in aligned
//! pieces and hands them to a [`DirectQueue`] — an output file's own thread, or the threads
//! ([`SPILL_WRITERS`]) of the hundreds of partition files a spill writes at once.

use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Sender};

/// The alignment `O_DIRECT` asks of a write's buffer, offset and length (a page: at least any
/// disk's logical block).
const BLOCK: usize = 4096;

/// Bytes a buffer holds before it goes to disk.
const BUFFER_BYTES: usize = 4 << 20;

/// Buffers an output file may have filled and not yet written: a row group arrives as one
/// burst of tens of megabytes, which this lets the caller hand over without waiting for the
/// disk.
const BUFFERS_IN_FLIGHT: usize = 8;

/// Where a file's bytes go: through a buffer into the page cache, or in aligned pieces around
/// it ([`Appender`]). The outputs' [`Sink`] and the spill's partition files are both one.
pub enum Destination {
    Buffered(BufWriter<File>),
    Direct(Appender),
}

impl Destination {
    /// Creates (or truncates) `path`, written through a buffer of `capacity` bytes.
    pub fn buffered(path: &Path, capacity: usize) -> io::Result<Destination> {
        Ok(Destination::Buffered(BufWriter::with_capacity(
            capacity,
            File::create(path)?,
        )))
    }

    /// Writes what is buffered (a direct file's last piece handed to its queue, padded); the
    /// file's length, to cut it to once the queue has written everything ([`Length::cut`]).
    pub fn finish(self) -> io::Result<Length> {
        match self {
            Destination::Buffered(writer) => {
                Length::of(writer.into_inner().map_err(|e| e.into_error())?)
            }
            Destination::Direct(appender) => appender.finish(),
        }
    }
}

impl Write for Destination {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Destination::Buffered(writer) => writer.write(bytes),
            Destination::Direct(appender) => appender.write(bytes),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Destination::Buffered(writer) => writer.write_all(bytes),
            Destination::Direct(appender) => appender.write_all(bytes),
        }
    }

    /// A direct file's data reaches the disk once its queue is finished; a flush before it has
    /// nothing to promise.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Destination::Buffered(writer) => writer.flush(),
            Destination::Direct(_) => Ok(()),
        }
    }
}

/// The destination of a [`crate::output::parquet::PendingFile`]'s bytes: written around the
/// page cache by a queue of the file's own, or buffered.
pub(crate) struct Sink {
    /// Comes first: fields drop in order, and the queue's thread ends only once the file's
    /// appender has let go of it.
    out: Destination,
    queue: Option<DirectQueue>,
}

impl Sink {
    /// Creates (or truncates) `path`, written around the page cache when `around_page_cache`
    /// and its file system allows.
    pub(crate) fn create(path: &Path, around_page_cache: bool) -> io::Result<Sink> {
        if around_page_cache {
            if let Some(file) = open_direct(path)? {
                let queue = DirectQueue::new(BUFFERS_IN_FLIGHT, 1);
                let appender = Appender::with_file(file, &queue, BUFFER_BYTES, BUFFER_BYTES);
                return Ok(Sink {
                    out: Destination::Direct(appender),
                    queue: Some(queue),
                });
            }
        }
        Ok(Sink {
            out: Destination::buffered(path, 1 << 20)?,
            queue: None,
        })
    }

    /// A row group is complete: a buffered file starts writing its dirty pages to disk without
    /// waiting for them, so that the fsync at the end has little left to do (a run's files are
    /// written over many seconds, and left to the page cache would all be written then, with
    /// the cores idle). Advisory: an error only means the fsync does all the work.
    pub(crate) fn row_group_written(&self) {
        #[cfg(target_os = "linux")]
        if let Destination::Buffered(writer) = &self.out {
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
    pub(crate) fn finish(self) -> io::Result<()> {
        let Sink { out, queue } = self;
        let length = out.finish()?;
        if let Some(queue) = queue {
            queue.finish()?;
        }
        length.cut()?;
        length.file.sync_all()
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out.write(bytes)
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A buffer aligned to [`BLOCK`], its capacity a multiple of it, as `O_DIRECT` needs.
struct Aligned {
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// SAFETY: `Aligned` owns its allocation outright, like a `Vec<u8>`.
unsafe impl Send for Aligned {}

impl Aligned {
    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity, BLOCK).expect("a buffer's size fits the address space")
    }

    /// An empty buffer of at least `bytes` (and at least a block).
    fn with_capacity(bytes: usize) -> Aligned {
        let capacity = bytes.max(1).div_ceil(BLOCK) * BLOCK;
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Aligned {
            ptr,
            len: 0,
            capacity,
        }
    }

    /// The filled part.
    fn filled(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `fill` or `pad`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies as much of `bytes` as fits; returns how much that was.
    fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.capacity - self.len);
        // SAFETY: `len + n <= capacity`, and `bytes` is not this allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Zeros the buffer up to the next [`BLOCK`] boundary, for a file's last write.
    fn pad(&mut self) {
        let end = self.len.div_ceil(BLOCK) * BLOCK;
        // SAFETY: `end <= capacity`, a multiple of `BLOCK`.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(self.len), 0, end - self.len) };
        self.len = end;
    }

    fn is_full(&self) -> bool {
        self.len == self.capacity
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.capacity)) };
    }
}

/// Creates (or truncates) `path` for writing `O_DIRECT`; `None` where its file system refuses.
fn open_direct(path: &Path) -> io::Result<Option<File>> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Pieces a spill's [`DirectQueue`] holds handed over and not yet written, at most, so that
/// the scatter waits for the disk only when it falls this far behind.
pub const SPILL_QUEUED_PIECES: usize = 64;

/// Bytes a spill file's [`Appender`] gathers before it hands them to the queue: a spill has
/// hundreds of files open at once (512 of them hold 256 MiB). The disk takes its writes
/// across hundreds of files at a few thousand a second whatever their size: 128 KiB pieces
/// held the 100M month's scatter to 390 MB/s, and 256 KiB pieces took 1.03× the time of these.
pub const SPILL_PIECE_BYTES: usize = 512 * 1024;

type Piece = (Arc<File>, Aligned, u64);

/// Threads writing a spill's pieces: a write around the page cache waits for the device, and
/// one thread writing the pieces of hundreds of files one after another kept a disk that takes
/// a gigabyte a second at a third of that, the scatter waiting on it.
pub const SPILL_WRITERS: usize = 4;

/// Threads writing the pieces of one file or many ([`Appender`]s), each piece at its own offset,
/// so that the order they are written in does not matter.
pub struct DirectQueue {
    to_disk: Option<Sender<Piece>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl DirectQueue {
    /// A queue of `writers` threads holding at most `depth` pieces handed over and not yet
    /// written. One writer suffices for one file: the kernel writes an extending write to a
    /// file around the page cache one at a time.
    pub fn new(depth: usize, writers: usize) -> Self {
        let (to_disk, to_write) = channel::bounded::<Piece>(depth);
        let threads = (0..writers.max(1))
            .map(|_| {
                let to_write = to_write.clone();
                std::thread::spawn(move || {
                    // The first failure is kept and reported by `finish`; the pieces after it
                    // are taken and dropped, so that no writer waits on a queue nobody empties.
                    let mut failed = None;
                    for (file, piece, offset) in to_write {
                        if failed.is_none() {
                            failed = write_at(&file, piece.filled(), offset).err();
                        }
                    }
                    failed.map_or(Ok(()), Err)
                })
            })
            .collect();
        DirectQueue {
            to_disk: Some(to_disk),
            threads,
        }
    }

    /// Waits for every piece handed over to be written (every [`Appender`] of the queue must
    /// be finished or dropped first); the first write that failed, if any.
    pub fn finish(mut self) -> io::Result<()> {
        drop(self.to_disk.take());
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let outcome = match thread.join() {
                Ok(outcome) => outcome,
                Err(_) => Err(io::Error::other("a file writer thread panicked")),
            };
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

impl Drop for DirectQueue {
    fn drop(&mut self) {
        drop(self.to_disk.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A file written through a [`DirectQueue`]: the bytes written to it are gathered in aligned
/// pieces of a fixed size, each handed to the queue whole; [`Appender::finish`] hands the
/// last one padded to a block, and the file is cut to its length once the queue is done
/// ([`Length::cut`]).
pub struct Appender {
    file: Arc<File>,
    piece_bytes: usize,
    piece: Aligned,
    handed: u64,
    to_disk: Sender<Piece>,
}

impl Appender {
    /// Creates (or truncates) `path`, written through `queue` around the page cache (opened
    /// `O_DIRECT`) where its file system allows, in pieces of `piece_bytes` after a first one
    /// of `first_piece_bytes` (rounded up to a block). Files filled at the same pace, as a
    /// scatter's are, hand their pieces over all at once unless their first pieces differ.
    pub fn create(
        path: &Path,
        queue: &DirectQueue,
        first_piece_bytes: usize,
        piece_bytes: usize,
    ) -> io::Result<Appender> {
        let file = match open_direct(path)? {
            Some(file) => file,
            None => File::create(path)?,
        };
        Ok(Self::with_file(file, queue, first_piece_bytes, piece_bytes))
    }

    fn with_file(
        file: File,
        queue: &DirectQueue,
        first_piece_bytes: usize,
        piece_bytes: usize,
    ) -> Appender {
        Appender {
            file: Arc::new(file),
            piece_bytes,
            piece: Aligned::with_capacity(first_piece_bytes),
            handed: 0,
            to_disk: queue
                .to_disk
                .clone()
                .expect("appender created after the queue finished"),
        }
    }

    fn hand_over(&mut self, next: Aligned) -> io::Result<()> {
        let piece = std::mem::replace(&mut self.piece, next);
        let offset = self.handed;
        self.handed += piece.len as u64;
        self.to_disk
            .send((Arc::clone(&self.file), piece, offset))
            .map_err(|_| io::Error::other("the file writer threads stopped"))
    }

    /// Hands everything written, the last block padded; returns the file's length, for
    /// [`Length::cut`] once the queue is finished.
    pub fn finish(mut self) -> io::Result<Length> {
        let length = self.handed + self.piece.len as u64;
        if self.piece.len > 0 {
            self.piece.pad();
            self.hand_over(Aligned::with_capacity(BLOCK))?;
        }
        Ok(Length {
            file: self.file,
            length,
        })
    }
}

impl Write for Appender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.piece.fill(bytes);
        if self.piece.is_full() {
            self.hand_over(Aligned::with_capacity(self.piece_bytes))?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A finished [`Appender`]'s file and the length to cut it to.
pub struct Length {
    file: Arc<File>,
    length: u64,
}

impl Length {
    /// A file written whole by other means (buffered), at the length it has.
    pub fn of(file: File) -> io::Result<Length> {
        let length = file.metadata()?.len();
        Ok(Length {
            file: Arc::new(file),
            length,
        })
    }

    /// Cuts the file to its length (its last write was padded to a block); call once the
    /// queue that wrote it is finished.
    pub fn cut(&self) -> io::Result<()> {
        self.file.set_len(self.length)
    }
}

/// Writes `bytes` at `offset`. A file system that takes `O_DIRECT` at open and then refuses
/// a write with it gets the file switched to buffered writes, and the write again (once: a
/// buffered write refused the same way is an error). Another writer of the same file may have
/// switched it already.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    match file.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // SAFETY: plain system calls on a descriptor `file` owns; no memory is passed.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            if flags < 0
                || (flags & libc::O_DIRECT != 0
                    && unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0)
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
    use std::path::PathBuf;

    /// Writes `sizes` pieces of counting bytes through a sink and reads the file back.
    fn round_trip(dir: &Path, sizes: &[usize], direct: bool) -> (Vec<u8>, Vec<u8>) {
        let path = dir.join(format!("f{}-{direct}", sizes.len()));
        let mut sink = Sink::create(&path, direct).unwrap();
        assert_eq!(
            matches!(sink.out, Destination::Buffered(_)),
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

    #[test]
    fn files_appended_side_by_side_through_one_queue_read_back_whole_and_cut_to_length() {
        let dir = tempfile::tempdir().unwrap();
        let queue = DirectQueue::new(SPILL_QUEUED_PIECES, SPILL_WRITERS);
        let mut files: Vec<(PathBuf, Appender, Vec<u8>)> = (0..5)
            .map(|f| {
                let path = dir.path().join(format!("part-{f}"));
                // First pieces of different sizes, as a scatter's files have.
                let first = SPILL_PIECE_BYTES / 8 * (f + 1);
                let appender = Appender::create(&path, &queue, first, SPILL_PIECE_BYTES).unwrap();
                (path, appender, Vec::new())
            })
            .collect();
        // Writes of uneven sizes, the files in turn, so that pieces fill and are handed over
        // in between; file 4 gets nothing.
        for round in 0..40usize {
            for (f, (_, appender, expected)) in files.iter_mut().enumerate().take(4) {
                let size = (round * 7919 + f * 104_729) % (SPILL_PIECE_BYTES / 2) + 1;
                let piece: Vec<u8> = (0..size).map(|b| (b + round * 31 + f) as u8).collect();
                appender.write_all(&piece).unwrap();
                expected.extend_from_slice(&piece);
            }
        }
        let mut lengths = Vec::new();
        let mut expected_files = Vec::new();
        for (path, appender, expected) in files {
            lengths.push(appender.finish().unwrap());
            expected_files.push((path, expected));
        }
        queue.finish().unwrap();
        for length in lengths {
            length.cut().unwrap();
        }
        for (path, expected) in expected_files {
            let read = std::fs::read(&path).unwrap();
            assert_eq!(read.len(), expected.len(), "{}", path.display());
            assert!(read == expected, "bytes differ in {}", path.display());
        }
    }

    #[test]
    fn a_failed_write_is_reported_by_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = DirectQueue::new(SPILL_QUEUED_PIECES, SPILL_WRITERS);
        let path = dir.path().join("read-only");
        std::fs::write(&path, b"").unwrap();
        // An appender whose file was opened read-only: its first write fails.
        let mut appender =
            Appender::create(&path, &queue, SPILL_PIECE_BYTES, SPILL_PIECE_BYTES).unwrap();
        appender.file = Arc::new(File::open(&path).unwrap());
        appender
            .write_all(&vec![1u8; SPILL_PIECE_BYTES + 1])
            .unwrap();
        drop(appender.finish().unwrap());
        assert!(queue.finish().is_err());
    }
}
