//! The file seam under the write-ahead log: a directory of log files ([`Dir`]) and one file
//! ([`LogFile`]), with the operating system's implementation ([`OsDir`]) and a simulated one
//! for tests ([`SimDir`]) that can lose power, fill up and fail.
//!
//! # What the log relies on
//! - [`Dir::create`] and [`Dir::remove`] return once the change to the directory is durable
//!   (the directory itself is synced), so a new segment survives a power loss and a removed
//!   one does not come back.
//! - [`LogFile::sync`] returns once every byte appended before it, and the file's length,
//!   are durable (`fdatasync`: the length is metadata the data needs, so it is included; the
//!   times are not, which is the point of not using `fsync`).
//! - [`LogFile::read_at`] fills the whole buffer or fails (`UnexpectedEof` past the end).
//! - Errors are std's [`io::Error`], the operating system's own type: a full device is
//!   [`io::ErrorKind::StorageFull`] (`ENOSPC`), whichever implementation raised it.
//!
//! Only the log calls these; nothing above the log touches files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A directory of log files, shared by the log's writer and its readers (hence `Clone`:
/// every clone is the same directory).
pub trait Dir: Clone + Send + Sync + 'static {
    /// One open file of this directory.
    type File: LogFile;

    /// Creates the file `name`, which must not exist, open for appending and reading, and
    /// syncs the directory before returning.
    fn create(&self, name: &str) -> io::Result<Self::File>;
    /// Opens the existing file `name` for appending and reading.
    fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Opens the existing file `name` for reading only (appending to it fails).
    fn open_read(&self, name: &str) -> io::Result<Self::File>;
    /// The names of the directory's files, in no particular order.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Removes the file `name` and syncs the directory before returning. Handles already
    /// open on it stay readable (as on Unix).
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// One open log file: appended to at its end, read anywhere, synced, truncated.
pub trait LogFile: Send + 'static {
    /// Appends all of `bytes` at the end of the file. On error a prefix of them may have
    /// been written.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far, and the length, durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` with the bytes at `offset` (a positioned read: no cursor, so readers on
    /// other threads need no lock).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes (durable only after the next [`LogFile::sync`]).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The operating system's directory (std::fs).
#[derive(Debug, Clone)]
pub struct OsDir {
    path: Arc<PathBuf>,
}

impl OsDir {
    /// The directory at `path`, created (with its parents) if missing; a directory it
    /// creates is made durable in its parent.
    pub fn open(path: impl Into<PathBuf>) -> io::Result<OsDir> {
        let path = path.into();
        if !path.is_dir() {
            fs::create_dir_all(&path)?;
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(OsDir {
            path: Arc::new(path),
        })
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Dir for OsDir {
    type File = OsFile;

    fn create(&self, name: &str) -> io::Result<OsFile> {
        let file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(self.path.join(name))?;
        sync_dir(&self.path)?;
        Ok(OsFile { file })
    }

    fn open(&self, name: &str) -> io::Result<OsFile> {
        let file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.path.join(name))?;
        Ok(OsFile { file })
    }

    fn open_read(&self, name: &str) -> io::Result<OsFile> {
        let file = fs::File::open(self.path.join(name))?;
        Ok(OsFile { file })
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&*self.path)? {
            // A name that is not UTF-8 is no segment of ours: skipped like any other stranger.
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path.join(name))?;
        sync_dir(&self.path)
    }
}

/// One file of an [`OsDir`], opened with `O_APPEND` (so a truncation moves where the next
/// append lands).
#[derive(Debug)]
pub struct OsFile {
    file: fs::File,
}

impl LogFile for OsFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Makes a directory's entries durable: `fsync` on the directory itself, the only way POSIX
/// offers (a file's own `fdatasync` does not cover its name).
fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// A simulated directory in memory, for tests: every clone and every file handle shares one
/// state, which remembers what a power loss would keep.
///
/// # The crash model
/// [`SimDir::crash`] cuts the power and returns the disk as it comes back:
/// - every byte a completed [`LogFile::sync`] covered survives;
/// - of the bytes appended since a file's last sync, a prefix survives, of a length drawn
///   from the seeded generator (nothing, all, or a cut inside a record);
/// - a truncation since the last sync may be undone;
/// - a file created or removed since the directory's last sync (between the two steps of
///   [`Dir::create`] or [`Dir::remove`]) may be there or not.
///
/// The power can also go at a chosen operation ([`SimDir::cut_power_at`]): every mutating
/// call (append, sync, truncate, and each of the two steps of create and remove) counts one
/// operation; from the chosen one on, every call fails with `EIO`, as on a machine whose
/// disk is gone, and the disk's state just before it is what [`SimDir::crash`] returns.
/// [`SimDir::kill`] is a process crash instead: the page cache survives it, so everything
/// appended survives.
///
/// Faults: [`SimDir::set_space_bytes`] makes appends past a total fail with `ENOSPC` (after
/// writing what fits, as a short write does), [`SimDir::fail_op`] makes one operation fail
/// with `EIO`.
///
/// NB: a mutex guards the state; this is test code, and the log's own append path never
/// sees it.
#[derive(Debug, Clone)]
pub struct SimDir {
    sim: Arc<Mutex<Sim>>,
}

/// One file handle of a [`SimDir`].
#[derive(Debug)]
pub struct SimFile {
    sim: Arc<Mutex<Sim>>,
    ino: u64,
    writable: bool,
}

impl SimDir {
    /// An empty directory whose crash choices follow `seed`.
    pub fn new(seed: u64) -> SimDir {
        SimDir::from_sim(Sim::new(seed))
    }

    /// Cuts the power now (unless it is already cut) and returns the directory as a fresh
    /// machine finds it after a reboot; this handle and its files fail with `EIO` from now on.
    pub fn crash(&self) -> SimDir {
        let mut sim = self.lock();
        if sim.image.is_none() {
            sim.cut_power();
        }
        // `cut_power` always leaves an image; the fallback is an empty disk.
        let image = sim.image.as_deref().cloned().unwrap_or_else(|| Sim::new(0));
        SimDir::from_sim(image)
    }

    /// A process crash: the returned directory holds everything appended so far, synced or
    /// not (the kernel's page cache outlives the process). This handle stays usable.
    pub fn kill(&self) -> SimDir {
        let mut sim = self.lock();
        let mut image = Sim::new(sim.rng.next());
        for (name, &ino) in &sim.names {
            if let Some(file) = sim.inodes.get(&ino) {
                image.insert(name, file.data.clone());
            }
        }
        SimDir::from_sim(image)
    }

    /// Cuts the power at mutating operation number `op` (counted from 1 since the
    /// directory was made, see [`SimDir::ops`]): that call and every later one fail.
    pub fn cut_power_at(&self, op: u64) {
        self.lock().cut_at = Some(op);
    }

    /// Makes mutating operation number `op` fail with `EIO`, once.
    pub fn fail_op(&self, op: u64) {
        self.lock().fail_at.insert(op);
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Caps the bytes all files together may hold (`None`: no cap); appends past it fail
    /// with `ENOSPC`.
    pub fn set_space_bytes(&self, space: Option<u64>) {
        self.lock().space_bytes = space;
    }

    fn from_sim(sim: Sim) -> SimDir {
        SimDir {
            sim: Arc::new(Mutex::new(sim)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        lock(&self.sim)
    }

    fn handle(&self, ino: u64, writable: bool) -> SimFile {
        SimFile {
            sim: Arc::clone(&self.sim),
            ino,
            writable,
        }
    }

    fn open_as(&self, name: &str, writable: bool) -> io::Result<SimFile> {
        let sim = self.lock();
        sim.alive()?;
        let ino = *sim.names.get(name).ok_or(io::ErrorKind::NotFound)?;
        drop(sim);
        Ok(self.handle(ino, writable))
    }
}

impl Dir for SimDir {
    type File = SimFile;

    fn create(&self, name: &str) -> io::Result<SimFile> {
        let mut sim = self.lock();
        sim.begin()?;
        if sim.names.contains_key(name) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let ino = sim.insert(name, Vec::new());
        sim.durable_names.remove(name);
        sim.begin()?;
        sim.durable_names = sim.names.clone();
        drop(sim);
        Ok(self.handle(ino, true))
    }

    fn open(&self, name: &str) -> io::Result<SimFile> {
        self.open_as(name, true)
    }

    fn open_read(&self, name: &str) -> io::Result<SimFile> {
        self.open_as(name, false)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let sim = self.lock();
        sim.alive()?;
        Ok(sim.names.keys().cloned().collect())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut sim = self.lock();
        sim.begin()?;
        sim.names.remove(name).ok_or(io::ErrorKind::NotFound)?;
        sim.begin()?;
        sim.durable_names = sim.names.clone();
        Ok(())
    }
}

impl LogFile for SimFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut sim = lock(&self.sim);
        sim.begin()?;
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let room = match sim.space_bytes {
            Some(space) => usize::try_from(space.saturating_sub(sim.used_bytes()))
                .unwrap_or(usize::MAX)
                .min(bytes.len()),
            None => bytes.len(),
        };
        sim.file_mut(self.ino)?
            .data
            .extend_from_slice(&bytes[..room]);
        if room < bytes.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut sim = lock(&self.sim);
        sim.begin()?;
        let file = sim.file_mut(self.ino)?;
        file.durable.truncate(file.same);
        let (same, data) = (file.same, &file.data);
        file.durable.extend_from_slice(&data[same..]);
        file.same = file.data.len();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let sim = lock(&self.sim);
        sim.alive()?;
        Ok(sim.file(self.ino)?.data.len() as u64)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let sim = lock(&self.sim);
        sim.alive()?;
        let data = &sim.file(self.ino)?.data;
        let bytes = usize::try_from(offset)
            .ok()
            .and_then(|start| data.get(start..start.checked_add(buf.len())?))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut sim = lock(&self.sim);
        sim.begin()?;
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let file = sim.file_mut(self.ino)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        file.data.resize(len, 0);
        file.same = file.same.min(len);
        Ok(())
    }
}

/// A small deterministic generator (SplitMix64, Steele, Lea and Flood 2014): enough for
/// crash choices and test data, and no dependency for it.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator started at `seed`.
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..=max`, near enough uniform for tests.
    pub(crate) fn upto(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next() % n,
            None => self.next(),
        }
    }

    /// A coin toss.
    pub(crate) fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

fn lock(sim: &Mutex<Sim>) -> MutexGuard<'_, Sim> {
    // A panic while the lock was held (a failed assertion in a test thread) leaves the state
    // as consistent as any crash would: keep going rather than poison every other thread.
    sim.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The state behind a [`SimDir`].
#[derive(Debug, Clone)]
struct Sim {
    rng: SplitMix64,
    /// Mutating operations so far.
    ops: u64,
    cut_at: Option<u64>,
    fail_at: BTreeSet<u64>,
    space_bytes: Option<u64>,
    /// The disk as it comes back, once the power is cut.
    image: Option<Box<Sim>>,
    next_ino: u64,
    inodes: BTreeMap<u64, SimData>,
    /// The directory as the running system sees it.
    names: BTreeMap<String, u64>,
    /// The directory as of its last sync.
    durable_names: BTreeMap<String, u64>,
}

/// One simulated file's bytes.
#[derive(Debug, Clone, Default)]
struct SimData {
    /// What readers see.
    data: Vec<u8>,
    /// What the last sync made durable.
    durable: Vec<u8>,
    /// `data[..same] == durable[..same]`: how much of the file no unsynced change touched.
    same: usize,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim {
            rng: SplitMix64::new(seed),
            ops: 0,
            cut_at: None,
            fail_at: BTreeSet::new(),
            space_bytes: None,
            image: None,
            next_ino: 1,
            inodes: BTreeMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
        }
    }

    /// Adds a file with `data` (durable, as is its name) and returns its inode.
    fn insert(&mut self, name: &str, data: Vec<u8>) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        let same = data.len();
        let durable = data.clone();
        self.inodes.insert(
            ino,
            SimData {
                data,
                durable,
                same,
            },
        );
        self.names.insert(name.to_owned(), ino);
        self.durable_names.insert(name.to_owned(), ino);
        ino
    }

    fn alive(&self) -> io::Result<()> {
        match self.image {
            Some(_) => Err(io::Error::from_raw_os_error(libc::EIO)),
            None => Ok(()),
        }
    }

    /// Starts a mutating operation: counts it, and fails it if the power is (now) cut or
    /// it is one chosen to fail.
    fn begin(&mut self) -> io::Result<()> {
        self.alive()?;
        self.ops += 1;
        if self.cut_at == Some(self.ops) {
            self.cut_power();
            return self.alive();
        }
        if self.fail_at.remove(&self.ops) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn cut_power(&mut self) {
        let mut image = Sim::new(self.rng.next());
        let mut names: BTreeSet<&String> = self.names.keys().collect();
        names.extend(self.durable_names.keys());
        for name in names {
            let now = self.names.get(name).copied();
            let then = self.durable_names.get(name).copied();
            // Where the directory changed since its last sync, either version may be on disk.
            let ino = if now == then || self.rng.coin() {
                now
            } else {
                then
            };
            if let Some(file) = ino.and_then(|ino| self.inodes.get(&ino)) {
                let bytes = file.after_power_loss(&mut self.rng);
                image.insert(name, bytes);
            }
        }
        self.image = Some(Box::new(image));
    }

    fn used_bytes(&self) -> u64 {
        let live: BTreeSet<u64> = self.names.values().copied().collect();
        live.iter()
            .filter_map(|ino| self.inodes.get(ino))
            .map(|file| file.data.len() as u64)
            .sum()
    }

    fn file(&self, ino: u64) -> io::Result<&SimData> {
        self.inodes
            .get(&ino)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn file_mut(&mut self, ino: u64) -> io::Result<&mut SimData> {
        self.inodes
            .get_mut(&ino)
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
}

impl SimData {
    /// What a power loss leaves of this file.
    fn after_power_loss(&self, rng: &mut SplitMix64) -> Vec<u8> {
        if self.durable.len() > self.same && rng.coin() {
            // The unsynced truncation never reached the disk, nor did anything after it.
            return self.durable.clone();
        }
        let unsynced = (self.data.len() - self.same) as u64;
        // `upto(unsynced)` is at most `unsynced`, which fits in usize.
        let kept = self.same + usize::try_from(rng.upto(unsynced)).unwrap_or(0);
        self.data[..kept].to_vec()
    }
}

/// A fresh directory under the system's temporary directory for one test, removed (with
/// what is in it) when dropped, whether the test passed or not.
#[cfg(test)]
pub(crate) struct TempDir(PathBuf);

#[cfg(test)]
impl TempDir {
    /// A new directory whose name has `tag`, the process id and the time in it.
    pub(crate) fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("engine-{tag}-{}-{nanos}", std::process::id());
        TempDir(std::env::temp_dir().join(name))
    }

    /// The log directory there.
    pub(crate) fn dir(&self) -> OsDir {
        OsDir::open(&self.0).unwrap()
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same calls on both implementations give the same answers.
    fn exercise(dir: &impl Dir) {
        let mut file = dir.create("a").unwrap();
        assert!(dir.create("a").is_err());
        file.append(b"hello ").unwrap();
        file.append(b"world").unwrap();
        file.sync().unwrap();
        assert_eq!(file.len().unwrap(), 11);
        let mut buf = [0u8; 5];
        file.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        assert!(file.read_at(8, &mut buf).is_err());
        file.truncate(5).unwrap();
        file.append(b"!").unwrap();
        let reader = dir.open_read("a").unwrap();
        let mut all = [0u8; 6];
        reader.read_at(0, &mut all).unwrap();
        assert_eq!(&all, b"hello!");
        let mut ro = dir.open_read("a").unwrap();
        assert!(ro.append(b"x").is_err());
        assert_eq!(dir.list().unwrap(), vec!["a".to_owned()]);
        dir.remove("a").unwrap();
        assert!(dir.list().unwrap().is_empty());
        assert!(dir.open("a").is_err());
        // An open handle outlives the name, as on Unix.
        reader.read_at(0, &mut all).unwrap();
    }

    #[test]
    fn os_dir_behaves_as_the_log_expects() {
        let temp = TempDir::new("file");
        exercise(&temp.dir());
    }

    #[test]
    fn sim_dir_behaves_as_the_os_dir() {
        exercise(&SimDir::new(1));
    }

    #[test]
    fn power_loss_keeps_synced_bytes_and_a_prefix_of_the_rest() {
        for seed in 0..200 {
            let dir = SimDir::new(seed);
            let mut file = dir.create("f").unwrap();
            file.append(b"synced").unwrap();
            file.sync().unwrap();
            file.append(b"-not-yet").unwrap();
            let after = dir.crash();
            let mut file = after.open("f").unwrap();
            let len = file.len().unwrap() as usize;
            assert!((6..=14).contains(&len), "seed {seed}: {len}");
            let mut buf = vec![0; len];
            file.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf[..], &b"synced-not-yet"[..len]);
            // The image is a healthy disk, and what it holds is durable there.
            file.append(b"x").unwrap();
            assert!(dir.list().is_err(), "the crashed machine stays down");
        }
    }

    #[test]
    fn kill_keeps_everything_written() {
        let dir = SimDir::new(3);
        let mut file = dir.create("f").unwrap();
        file.append(b"page cache").unwrap();
        let after = dir.kill().crash();
        assert_eq!(after.open("f").unwrap().len().unwrap(), 10);
    }

    #[test]
    fn a_cut_between_create_and_the_directory_sync_may_lose_the_file() {
        let mut kept = BTreeSet::new();
        for seed in 0..64 {
            let dir = SimDir::new(seed);
            dir.create("old").unwrap();
            dir.cut_power_at(dir.ops() + 2);
            assert!(dir.create("new").is_err());
            let after = dir.crash();
            kept.insert(after.list().unwrap());
        }
        let both = vec!["new".to_owned(), "old".to_owned()];
        assert_eq!(kept, BTreeSet::from([vec!["old".to_owned()], both]));
    }

    #[test]
    fn an_unsynced_truncation_may_be_undone() {
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let dir = SimDir::new(seed);
            let mut file = dir.create("f").unwrap();
            file.append(b"0123456789").unwrap();
            file.sync().unwrap();
            file.truncate(4).unwrap();
            seen.insert(dir.crash().open("f").unwrap().len().unwrap());
        }
        assert_eq!(seen, BTreeSet::from([4, 10]));
    }

    #[test]
    fn a_full_disk_writes_what_fits_then_fails() {
        let dir = SimDir::new(0);
        dir.set_space_bytes(Some(8));
        let mut file = dir.create("f").unwrap();
        file.append(b"12345").unwrap();
        let err = file.append(b"6789").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(file.len().unwrap(), 8);
        file.truncate(5).unwrap();
        dir.set_space_bytes(None);
        file.append(b"6789").unwrap();
    }

    #[test]
    fn a_chosen_operation_fails_once() {
        let dir = SimDir::new(0);
        let mut file = dir.create("f").unwrap();
        dir.fail_op(dir.ops() + 1);
        assert!(file.append(b"x").is_err());
        file.append(b"y").unwrap();
        assert_eq!(file.len().unwrap(), 1);
    }
}
