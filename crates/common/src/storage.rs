//! The one seam for durable file writes ([`Storage`]), its real
//! implementation ([`LocalFs`]) and a fault-injecting double ([`FaultyFs`]).
//!
//! Every file imgsim writes goes through [`Storage::write_with`], which
//! follows one protocol: write a temporary file beside the target, fsync it,
//! rename it over the target, fsync the folder. Readers of the final name
//! therefore only ever see a complete file, and once the call returns the
//! file survives a power cut. Renames and removals fsync their folders too,
//! and [`Storage::barrier`] passes the durability point of another store
//! (sled's flush) through the seam, so that a double can fail it as well.

use std::fmt::Debug;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The operations of the seam, as counted and failed by [`FaultyFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Creating folders.
    CreateDir,
    /// Writing and fsyncing a temporary file (the first step of a write).
    Write,
    /// Renaming (a temporary file into place, or a folder).
    Rename,
    /// Removing a file or a folder.
    Remove,
    /// Fsyncing a folder.
    SyncDir,
    /// Another store's durability point (see [`Storage::barrier`]).
    Barrier,
}

/// Where and how files are written durably. Implementations must be safe
/// to share between threads.
pub trait Storage: Send + Sync + Debug {
    /// Writes `path` whole with what `fill` writes: into a temporary file in
    /// the same folder, fsynced, renamed over `path`, folder fsynced. On
    /// error the temporary file is removed and `path` is untouched (or, if
    /// the final folder fsync failed, in place but not known durable).
    fn write_with(
        &self,
        path: &Path,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()>;

    /// Creates `dir` and its missing parents, fsyncing each new entry's folder.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Renames a file or folder, then fsyncs the folders of both names.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file, then fsyncs its folder.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes a folder and everything in it, then fsyncs its parent.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Fsyncs a folder, making the entries created or renamed in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Runs `f`, another store's durability point (`what` names it), e.g.
    /// sled's `flush`. The real storage just runs it; a double may fail it.
    fn barrier(&self, what: &str, f: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()>;

    /// Writes `bytes` to `path` durably like [`Storage::write`], the file
    /// readable and writable by its owner only (mode 0600 on Unix) from the
    /// moment its temporary file is created: for secrets such as tokens.
    fn write_private(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;

    /// Writes `bytes` to `path` durably (see [`Storage::write_with`]).
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        self.write_with(path, &mut |w| w.write_all(bytes))
    }

    /// Copies the file `from` to `to` durably; returns the bytes copied.
    fn copy(&self, from: &Path, to: &Path) -> io::Result<u64> {
        let mut n = 0;
        self.write_with(to, &mut |w| {
            let mut src = File::open(from).map_err(|e| at(from, e))?;
            n = io::copy(&mut src, w)?;
            Ok(())
        })?;
        Ok(n)
    }
}

/// The real storage: the local file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalFs;

/// The real storage as a shareable handle.
pub fn local() -> Arc<dyn Storage> {
    Arc::new(LocalFs)
}

/// `e` with `path` in its message, keeping its kind (so that a full disk is
/// still recognised as one).
fn at(path: &Path, e: io::Error) -> io::Error {
    let text = e.to_string();
    if text.contains(&path.display().to_string()) {
        return e;
    }
    io::Error::new(e.kind(), format!("{}: {text}", path.display()))
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The temporary name a write of `path` uses: `<name>.<pid>-<n>.tmp` in the
/// same folder, unique within the process so that concurrent writes of one
/// file do not collide.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!("{name}.{}-{n}.tmp", std::process::id()))
}

/// True for a temporary file a write of `target` left behind (a write that
/// was killed or failed); such files may be deleted on sight.
pub fn is_temp_of(candidate: &Path, target: &Path) -> bool {
    let (Some(c), Some(t)) = (candidate.file_name(), target.file_name()) else {
        return false;
    };
    let (c, t) = (c.to_string_lossy(), t.to_string_lossy());
    c.len() > t.len() && c.starts_with(&*t) && c[t.len()..].starts_with('.') && c.ends_with(".tmp")
}

/// True for any temporary file of the seam (`*.tmp`).
pub fn is_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".tmp"))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, e))
}

/// The write protocol, with `step` called before each of its three steps
/// (write the temporary file, rename it, fsync the folder); an error from
/// `step` stops the write there. `torn` decides what a failed first step
/// leaves: nothing (the real storage), or half of the bytes in the
/// temporary file (what a kill would leave; the double).
fn durable_write(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    step: &dyn Fn(Op, &Path) -> io::Result<()>,
    torn: bool,
) -> io::Result<()> {
    durable_write_mode(path, fill, step, torn, false)
}

/// [`durable_write`], the temporary file created with mode 0600 (Unix)
/// when `private`.
fn durable_write_mode(
    path: &Path,
    fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    step: &dyn Fn(Op, &Path) -> io::Result<()>,
    torn: bool,
    private: bool,
) -> io::Result<()> {
    let dir = parent_of(path);
    let tmp = temp_path(path);
    let written = step(Op::Write, path).and_then(|()| {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let file = open.open(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    });
    if let Err(e) = written {
        if torn {
            let mut bytes = Vec::new();
            let _ = fill(&mut bytes);
            let _ = std::fs::write(&tmp, &bytes[..bytes.len() / 2]);
        } else {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(at(path, e));
    }
    if let Err(e) = step(Op::Rename, path).and_then(|()| std::fs::rename(&tmp, path)) {
        if !torn {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(at(path, e));
    }
    step(Op::SyncDir, dir)?;
    fsync_dir(dir)
}

fn create_dirs(dir: &Path, step: &dyn Fn(Op, &Path) -> io::Result<()>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    step(Op::CreateDir, dir)?;
    // The new folders, outermost first: each one's parent is fsynced once it exists.
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
    for d in missing.iter().rev() {
        step(Op::SyncDir, parent_of(d))?;
        fsync_dir(parent_of(d))?;
    }
    Ok(())
}

impl Storage for LocalFs {
    fn write_with(
        &self,
        path: &Path,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        durable_write(path, fill, &|_, _| Ok(()), false)
    }

    fn write_private(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        durable_write_mode(
            path,
            &mut |w| w.write_all(bytes),
            &|_, _| Ok(()),
            false,
            true,
        )
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_dirs(dir, &|_, _| Ok(()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to).map_err(|e| at(from, e))?;
        fsync_dir(parent_of(to))?;
        if parent_of(from) != parent_of(to) {
            fsync_dir(parent_of(from))?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path).map_err(|e| at(path, e))?;
        fsync_dir(parent_of(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path).map_err(|e| at(path, e))?;
        fsync_dir(parent_of(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fsync_dir(dir)
    }

    fn barrier(&self, _what: &str, f: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        f()
    }
}

/// Which operation [`FaultyFs`] fails, and how.
#[derive(Debug, Clone, Default)]
struct Plan {
    /// Only operations of this kind count (None: every operation counts).
    only: Option<Op>,
    /// Fail the operation with this 0-based index among those counted.
    at: Option<u64>,
    /// Counted so far.
    seen: u64,
    /// After the first failure, fail every later operation too (the disk
    /// went away, or the process is as good as dead).
    sticky: bool,
    /// A failure happened.
    tripped: bool,
    /// The OS error code of injected failures (default EIO).
    errno: i32,
}

/// A fault-injecting [`Storage`]: the real file system, except that a
/// chosen operation fails (and, if asked, every one after it). A failed
/// first step of a write leaves a half-written temporary file, as a kill
/// would. It also records every operation, so tests can check the order a
/// protocol follows.
#[derive(Debug, Default)]
pub struct FaultyFs {
    plan: Mutex<Plan>,
    log: Mutex<Vec<(Op, PathBuf)>>,
}

impl FaultyFs {
    /// A double that fails nothing (until [`FaultyFs::fail`] is called).
    pub fn new() -> FaultyFs {
        FaultyFs::default()
    }

    /// From now on, fail the `n`-th (0-based) operation of kind `only` (or
    /// of any kind), with OS error `errno` (e.g. 5 EIO, 28 ENOSPC); with
    /// `sticky`, every operation after it fails too. Resets the count.
    pub fn fail(&self, only: Option<Op>, n: u64, errno: i32, sticky: bool) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = Plan {
            only,
            at: Some(n),
            seen: 0,
            sticky,
            tripped: false,
            errno,
        };
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        *self.plan.lock().unwrap_or_else(|p| p.into_inner()) = Plan::default();
    }

    /// Whether an injected failure has happened since the last [`FaultyFs::fail`].
    pub fn tripped(&self) -> bool {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).tripped
    }

    /// Every operation so far, in order (failed ones included).
    pub fn ops(&self) -> Vec<(Op, PathBuf)> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Operations counted so far (of the kind the plan counts).
    pub fn counted(&self) -> u64 {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).seen
    }

    /// Records `op` and decides whether it fails.
    fn step(&self, op: Op, path: &Path) -> io::Result<()> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op, path.to_path_buf()));
        let mut p = self.plan.lock().unwrap_or_else(|p| p.into_inner());
        if p.tripped && p.sticky {
            return Err(self::injected(p.errno, op, path));
        }
        if p.only.is_some_and(|o| o != op) {
            return Ok(());
        }
        let index = p.seen;
        p.seen += 1;
        if p.at == Some(index) {
            p.tripped = true;
            return Err(self::injected(p.errno, op, path));
        }
        Ok(())
    }
}

fn injected(errno: i32, op: Op, path: &Path) -> io::Error {
    let e = io::Error::from_raw_os_error(if errno == 0 { 5 } else { errno });
    io::Error::new(
        e.kind(),
        format!("{} (injected fault in {op:?} of {})", e, path.display()),
    )
}

impl Storage for FaultyFs {
    fn write_with(
        &self,
        path: &Path,
        fill: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<()> {
        durable_write(path, fill, &|op, p| self.step(op, p), true)
    }

    fn write_private(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        durable_write_mode(
            path,
            &mut |w| w.write_all(bytes),
            &|op, p| self.step(op, p),
            true,
            true,
        )
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        create_dirs(dir, &|op, p| self.step(op, p))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename, from)?;
        std::fs::rename(from, to).map_err(|e| at(from, e))?;
        self.step(Op::SyncDir, parent_of(to))?;
        LocalFs.sync_dir(parent_of(to))?;
        if parent_of(from) != parent_of(to) {
            self.step(Op::SyncDir, parent_of(from))?;
            LocalFs.sync_dir(parent_of(from))?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step(Op::Remove, path)?;
        LocalFs.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step(Op::Remove, path)?;
        LocalFs.remove_dir_all(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(Op::SyncDir, dir)?;
        LocalFs.sync_dir(dir)
    }

    fn barrier(&self, what: &str, f: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        self.step(Op::Barrier, Path::new(what))?;
        f()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        LocalFs.write(&f, b"first").unwrap();
        LocalFs.write(&f, b"second").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the file itself");
    }

    #[cfg(unix)]
    #[test]
    fn a_private_write_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        LocalFs.write_private(&f, b"secret").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"secret");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.bin");
        LocalFs.write(&f, b"old").unwrap();
        let err = LocalFs
            .write_with(&f, &mut |w| {
                w.write_all(b"partial")?;
                Err(io::Error::other("the producer failed"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("a.bin"), "{err}");
        assert_eq!(std::fs::read(&f).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_double_fails_the_chosen_step_and_leaves_what_a_kill_would() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("seg.bin");
        let fs = FaultyFs::new();
        fs.write(&f, b"old contents").unwrap();
        // Fail the first step of the next write: a torn temporary, old file intact.
        fs.fail(Some(Op::Write), 0, 28, false);
        let err = fs.write(&f, b"new contents!").unwrap_err();
        assert_eq!(crate::ErrorKind::of_io(&err), crate::ErrorKind::StorageFull);
        assert!(fs.tripped());
        assert_eq!(std::fs::read(&f).unwrap(), b"old contents");
        let temps: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_temp_of(p, &f))
            .collect();
        assert_eq!(temps.len(), 1, "a torn temporary is left behind");
        assert_eq!(std::fs::read(&temps[0]).unwrap().len(), 6);
        // Fail the folder fsync: the file is in place, the caller is told.
        fs.fail(Some(Op::SyncDir), 0, 5, false);
        assert!(fs.write(&f, b"newer").is_err());
        assert_eq!(std::fs::read(&f).unwrap(), b"newer");
        // Sticky: everything after the fault fails.
        fs.fail(None, 0, 5, true);
        assert!(fs.write(&f, b"x").is_err());
        assert!(fs.sync_dir(dir.path()).is_err());
        assert!(fs.barrier("flush", &mut || Ok(())).is_err());
        fs.heal();
        fs.write(&f, b"healed").unwrap();
        let kinds: Vec<Op> = fs.ops().iter().map(|(o, _)| *o).collect();
        assert_eq!(&kinds[..3], &[Op::Write, Op::Rename, Op::SyncDir]);
    }

    #[test]
    fn folders_are_created_and_renamed_durably() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let deep = dir.path().join("a/b/c");
        fs.create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        let syncs = fs.ops().iter().filter(|(o, _)| *o == Op::SyncDir).count();
        assert_eq!(syncs, 3, "each new folder's parent is fsynced");
        fs.write(&deep.join("f"), b"1").unwrap();
        fs.rename(&dir.path().join("a"), &dir.path().join("z"))
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("z/b/c/f")).unwrap(), b"1");
        fs.copy(&dir.path().join("z/b/c/f"), &dir.path().join("g"))
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("g")).unwrap(), b"1");
        fs.remove_file(&dir.path().join("g")).unwrap();
        fs.remove_dir_all(&dir.path().join("z")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn temporaries_are_recognised() {
        let t = Path::new("/x/0001.seg");
        let tmp = temp_path(t);
        assert!(is_temp_of(&tmp, t));
        assert!(is_temp(&tmp));
        assert!(!is_temp_of(Path::new("/x/0001.seg"), t));
        assert!(!is_temp_of(Path::new("/x/0001.segment.tmpx"), t));
    }
}
