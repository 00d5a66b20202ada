//! A filesystem session store for [cloakroom](https://docs.rs/cloakroom): one file per
//! session, for single-server deployments and development.
//!
//! ```no_run
//! use cloakroom::{SessionCookie, SessionLayer};
//! use cloakroom_fs::FsStore;
//!
//! # fn app() -> Result<(), Box<dyn std::error::Error>> {
//! let store = FsStore::new("/var/lib/myapp/sessions")?;
//! let cookie = SessionCookie::new("__session").secrets_from_env("SESSION_SECRETS")?;
//! let layer = SessionLayer::new(cookie, store)?;
//! # Ok(()) }
//! ```
//!
//! - **Survives restarts**: sessions are files `<dir>/<id>.json`.
//! - **Atomic writes**: a change is written to a temporary file, `fsync`ed and renamed over the
//!   old one, so a crash leaves the old version or the new one, never a torn file.
//! - **Durable when answered**: a create, an update and a delete each `fsync` the directory
//!   after they change a name in it, so a login the app answered is not lost in a crash, and
//!   a logout does not come undone.
//! - **No lost updates, across processes**: every call holds an exclusive `flock` on one of
//!   64 lock files in `<dir>/.locks` (chosen by the session id) while it reads, applies its
//!   changes and writes, so several app instances on one machine can share the directory and
//!   concurrent requests that change different keys all survive. A destroyed session is not
//!   recreated by a late write.
//! - **Ids never become paths** unless they have the exact shape of a generated id (32
//!   base64url characters): no cookie can name a file outside the directory.
//! - **Expiry**: the file's modification time is the last activity; a load refreshes it
//!   (`futimens`, no rewrite). Expired sessions are never returned, and a background task
//!   (every 5 minutes by default) deletes them so the directory does not grow without bound.
//! - **Private**: the directory and `.locks` are created `0700` and every file `0600`, so no
//!   other user of the machine can read a session; a directory that exists and is open to
//!   others is an [`FsStoreError::Exposed`] error when the store is built (fix it with
//!   `chmod 700`), rather than a warning that a deployment would keep running past.
//! - **A user's sessions** ([`Owners`](cloakroom::Owners)): each owner's sessions are entries
//!   `<dir>/.owners/<sha256 of the name>/<id>`, made (and `fsync`ed) after the session's
//!   file at its login and removed with it at delete and by the sweep.
//! - A corrupt or foreign file is an [`FsStoreError::Corrupt`] naming the file.

#![forbid(unsafe_code)]

mod owners;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use cloakroom::SessionId;
use cloakroom::store::{Changes, FailureKind, Record, SessionStore, StoreError, Update};
use serde::{Deserialize, Serialize};

/// Lock files, shared by all sessions whose id hashes to the same one.
const LOCK_STRIPES: usize = 64;
/// Temporary files older than this are leftovers of a crash and are swept.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// The on-disk format version.
const FORMAT: u32 = 1;

/// What went wrong on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsStoreError {
    /// A file operation failed.
    #[error("session store I/O on {path}: {source}")]
    Io {
        /// The file or directory; a session file's id is replaced by its short hash
        /// (`<dir>/#1a2b3c4d.json`), since an id is a credential.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A session file that this store cannot read.
    #[error("session file {path} is corrupt or not a cloakroom session: {reason}")]
    Corrupt {
        /// The file, its session id replaced by the id's short hash.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An id that is not safe to use as a file name reached the store.
    #[error("refusing an id that is not a generated session id")]
    InvalidId,
    /// The session directory (or its `.locks`) can be read or entered by other users of the
    /// machine, who could then read every session. The store creates its directories `0700`
    /// and its files `0600`; an existing directory must be closed to others first.
    #[error(
        "session directory {path} is open to other users (mode {mode:03o}): run `chmod 700 {path}`"
    )]
    Exposed {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A session's lock was held by someone else for longer than the lock timeout (see
    /// [`FsStoreBuilder::lock_timeout`]); retrying later may help.
    #[error("session lock {path} still held after {waited:?}")]
    LockTimeout {
        /// The lock file (one of `.locks`, not named after a session).
        path: PathBuf,
        /// How long the call waited.
        waited: Duration,
    },
    /// The blocking task running the file operation was lost (the runtime is shutting down).
    #[error("the blocking task of a session file operation failed: {0}")]
    Task(String),
}

/// What a session file holds.
#[derive(Serialize, Deserialize)]
struct File1 {
    cloakroom_fs: u32,
    record: Record,
}

/// Sessions as files in a directory. See the [crate documentation](crate).
#[derive(Clone, Debug)]
pub struct FsStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    locks: PathBuf,
    /// The index of owners' sessions (see [`owners`]).
    owners: PathBuf,
    lock_timeout: Duration,
}

/// Builds an [`FsStore`].
#[derive(Debug)]
#[must_use]
pub struct FsStoreBuilder {
    dir: PathBuf,
    sweep_interval: Duration,
    lock_timeout: Duration,
}

impl FsStoreBuilder {
    /// How long a call waits for a session's lock (5 s by default) before it fails with
    /// [`FsStoreError::LockTimeout`]: a holder that is stuck (a hung process, a network
    /// filesystem) must not block every later request of the session, and a blocking thread,
    /// for ever.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How often expired sessions are deleted; every 5 minutes by default.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Creates the directory (and its `.locks`) if needed, and, inside a Tokio runtime, starts
    /// the sweeping task, which ends when the last clone of the store is dropped.
    ///
    /// # Errors
    ///
    /// [`FsStoreError::Io`] if the directory cannot be created; [`FsStoreError::Exposed`] if
    /// it exists and other users may read or enter it.
    pub fn build(self) -> Result<FsStore, FsStoreError> {
        let locks = self.dir.join(".locks");
        let owners = self.dir.join(".owners");
        private_dir(&self.dir)?;
        private_dir(&locks)?;
        private_dir(&owners)?;
        let inner = Arc::new(Inner {
            dir: self.dir,
            locks,
            owners,
            lock_timeout: self.lock_timeout,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep_periodically(
                Arc::downgrade(&inner),
                self.sweep_interval,
            ));
        } else {
            tracing::warn!(dir = %inner.dir.display(), "FsStore built outside a Tokio runtime: expired sessions are not swept; call FsStore::sweep");
        }
        Ok(FsStore { inner })
    }
}

async fn sweep_periodically(store: Weak<Inner>, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else { return };
        match tokio::task::spawn_blocking(move || store.sweep(SystemTime::now())).await {
            Ok(Ok(removed)) => tracing::trace!(removed, "fs store swept expired sessions"),
            Ok(Err(error)) => tracing::warn!(%error, "fs store sweep failed"),
            Err(error) => tracing::warn!(%error, "fs store sweep task failed"),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> FsStoreError + '_ {
    move |source| FsStoreError::Io {
        path: redacted(path),
        source,
    }
}

/// `path` as errors carry it: a session file's id (`<id>.json`, the temporary
/// `.tmp-…-<id>.json`, an owner's entry `<id>`) replaced by its short hash, since an id is a
/// credential.
fn redacted(path: &Path) -> PathBuf {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return path.to_owned();
    };
    let file = SessionId::redact(name, ".json");
    let name = if file == name {
        SessionId::redact(name, "")
    } else {
        file
    };
    path.with_file_name(name)
}

impl FsStore {
    /// A store in `dir` with the default sweep interval; see [`FsStore::builder`].
    ///
    /// # Errors
    ///
    /// [`FsStoreError::Io`] if the directory cannot be created; [`FsStoreError::Exposed`] if
    /// it exists and other users may read or enter it.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, FsStoreError> {
        Self::builder(dir).build()
    }

    /// A builder for a store in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> FsStoreBuilder {
        FsStoreBuilder {
            dir: dir.into(),
            sweep_interval: Duration::from_secs(300),
            lock_timeout: Duration::from_secs(5),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Deletes every expired session and crash leftover now; returns how many sessions it
    /// deleted.
    ///
    /// # Errors
    ///
    /// [`FsStoreError::Io`] if the directory cannot be listed.
    pub fn sweep(&self) -> Result<usize, FsStoreError> {
        self.inner.sweep(SystemTime::now())
    }

    /// Runs `operation` on a blocking thread.
    async fn blocking<T, F>(&self, operation: F) -> Result<T, FsStoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, FsStoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || operation(&inner))
            .await
            .map_err(|error| FsStoreError::Task(error.to_string()))?
    }
}

/// An exclusive lock on a session's stripe, released on drop (closing the file).
struct Locked {
    _file: File,
}

impl Inner {
    /// The session file of `id`, only for ids of the generated shape.
    fn path(&self, id: &SessionId) -> Result<PathBuf, FsStoreError> {
        // SessionId::parse admits only [A-Za-z0-9_-]{32}: no separator, dot or NUL.
        SessionId::parse(id.as_str()).ok_or(FsStoreError::InvalidId)?;
        Ok(self.dir.join(format!("{}.json", id.as_str())))
    }

    fn lock(&self, id: &SessionId) -> Result<Locked, FsStoreError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_str().as_bytes());
        let stripe = usize::from(digest.as_ref()[0]) % LOCK_STRIPES;
        let path = self.locks.join(stripe.to_string());
        let file = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        // Waits in short sleeps rather than in a blocking `flock`, which has no timeout.
        let deadline = std::time::Instant::now() + self.lock_timeout;
        let mut pause = Duration::from_micros(100);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Locked { _file: file }),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(FsStoreError::LockTimeout {
                        path: path.clone(),
                        waited: self.lock_timeout,
                    });
                }
                Err(fs::TryLockError::Error(error)) => return Err(io_at(&path)(error)),
            }
        }
    }

    /// The record in `path` with its expiry from the file's modification time, or `None` if
    /// there is no file.
    fn read(&self, path: &Path) -> Result<Option<Record>, FsStoreError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_at(path)(error)),
        };
        let corrupt = |reason: String| FsStoreError::Corrupt {
            path: redacted(path),
            reason,
        };
        let file: File1 = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if file.cloakroom_fs != FORMAT {
            return Err(corrupt(format!(
                "unknown format version {}",
                file.cloakroom_fs
            )));
        }
        let mut record = file.record;
        let modified = fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .map_err(io_at(path))?;
        record.expires = expiry(modified, &record);
        Ok(Some(record))
    }

    /// Writes `record` to `path` atomically: temporary file, fsync, rename.
    fn write(&self, path: &Path, record: &Record) -> Result<(), FsStoreError> {
        let temp = self.temp_path(path);
        let result = self
            .write_temp(&temp, record)
            .and_then(|()| fs::rename(&temp, path).map_err(io_at(path)))
            .and_then(|()| self.sync_dir());
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Makes a rename (or a removal) in the directory durable: until the directory itself is
    /// `fsync`ed, a crash can bring the old file back.
    fn sync_dir(&self) -> Result<(), FsStoreError> {
        sync(&self.dir)
    }

    fn temp_path(&self, path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("session");
        self.dir
            .join(format!(".tmp-{}-{name}", SessionId::generate().as_str()))
    }

    fn write_temp(&self, temp: &Path, record: &Record) -> Result<(), FsStoreError> {
        let contents = serde_json::to_vec(&File1 {
            cloakroom_fs: FORMAT,
            record: record.clone(),
        })
        .map_err(|error| FsStoreError::Corrupt {
            path: redacted(temp),
            reason: error.to_string(),
        })?;
        let mut file = private_file()
            .write(true)
            .create_new(true)
            .open(temp)
            .map_err(io_at(temp))?;
        file.write_all(&contents).map_err(io_at(temp))?;
        file.sync_all().map_err(io_at(temp))
    }

    fn remove(&self, path: &Path) -> Result<(), FsStoreError> {
        match fs::remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_at(path)(error)),
            _ => Ok(()),
        }
    }

    /// The live record, its expiry refreshed if `touch`.
    fn load(&self, id: &SessionId, touch: bool) -> Result<Option<Record>, FsStoreError> {
        let path = self.path(id)?;
        let _lock = self.lock(id)?;
        let Some(mut record) = self.read(&path)? else {
            return Ok(None);
        };
        let now = SystemTime::now();
        if record.is_expired(now) {
            self.remove_expired(id, &path, &record)?;
            return Ok(None);
        }
        if !touch {
            return Ok(Some(record));
        }
        record.touch(now);
        // The modification time is the last activity: refreshing it is the touch.
        File::options()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_modified(now))
            .map_err(io_at(&path))?;
        Ok(Some(record))
    }

    fn create(&self, record: &Record) -> Result<SessionId, FsStoreError> {
        loop {
            let id = SessionId::generate();
            let path = self.path(&id)?;
            let _lock = self.lock(&id)?;
            let temp = self.temp_path(&path);
            self.write_temp(&temp, record)?;
            // A hard link fails if the name exists: O_EXCL semantics for the final name.
            let linked = fs::hard_link(&temp, &path);
            let _ = fs::remove_file(&temp);
            match linked {
                // A login the app answered must survive a crash: the new name made durable,
                // and then its owner's entry (see `owners`).
                Ok(()) => {
                    self.sync_dir()?;
                    drop(_lock);
                    if let Some(owner) = &record.owner {
                        self.index(&owner.name, &id)?;
                    }
                    return Ok(id);
                }
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(io_at(&path)(error)),
            }
        }
    }

    fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, FsStoreError> {
        let path = self.path(id)?;
        let _lock = self.lock(id)?;
        let now = SystemTime::now();
        let Some(mut record) = self.read(&path)? else {
            return Ok(Update::Missing);
        };
        if record.is_expired(now) {
            self.remove_expired(id, &path, &record)?;
            return Ok(Update::Missing);
        }
        record.apply(changes, now);
        self.write(&path, &record)?;
        Ok(Update::Applied)
    }

    fn delete(&self, id: &SessionId) -> Result<(), FsStoreError> {
        let path = self.path(id)?;
        let _lock = self.lock(id)?;
        // Its owner's entry goes with it; a file that cannot be read has none to find (a
        // list removes what is left behind).
        let owner = self
            .read(&path)
            .ok()
            .flatten()
            .and_then(|record| record.owner);
        self.remove(&path)?;
        // A logout must survive a crash too: without this, the file can come back.
        self.sync_dir()?;
        if let Some(owner) = owner {
            self.unindex_or_warn(&owner.name, id);
        }
        Ok(())
    }

    /// Removes the expired session file `path` of `id`, and its owner's entry.
    fn remove_expired(
        &self,
        id: &SessionId,
        path: &Path,
        record: &Record,
    ) -> Result<(), FsStoreError> {
        self.remove(path)?;
        if let Some(owner) = &record.owner {
            self.unindex_or_warn(&owner.name, id);
        }
        Ok(())
    }

    fn sweep(&self, now: SystemTime) -> Result<usize, FsStoreError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(io_at(&self.dir))? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".tmp-") {
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified + STALE_TEMP < now);
                if stale {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            }
            let Some(id) = name.strip_suffix(".json").and_then(SessionId::parse) else {
                continue;
            };
            let path = entry.path();
            let _lock = self.lock(&id)?;
            match self.read(&path) {
                Ok(Some(record)) if record.is_expired(now) => {
                    self.remove_expired(&id, &path, &record)?;
                    removed += 1;
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "fs store sweep skipped a file"),
            }
        }
        Ok(removed)
    }
}

/// `fsync` of a directory: the names made or removed in it survive a crash.
fn sync(dir: &Path) -> Result<(), FsStoreError> {
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_at(dir))
}

/// Creates `dir` (and its parents) `0700` if it is missing; refuses one that other users may
/// read or enter, since they could read every session.
fn private_dir(dir: &Path) -> Result<(), FsStoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_at(dir))?;
        let mode = fs::metadata(dir).map_err(io_at(dir))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FsStoreError::Exposed {
                path: dir.to_owned(),
                mode,
            });
        }
        Ok(())
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(io_at(dir))
}

/// Options for a file only this user may read and write (`0600`).
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// `min(last activity + idle timeout, deadline)`.
fn expiry(last_activity: SystemTime, record: &Record) -> SystemTime {
    let idle = cloakroom::store::later(last_activity, record.idle_timeout);
    record.deadline.map_or(idle, |deadline| idle.min(deadline))
}

/// Data no retry can fix is refused (500): a session file that is corrupt or not ours;
/// everything else is an outage (503).
impl StoreError for FsStoreError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Corrupt { .. } | Self::InvalidId => FailureKind::Rejected,
            _ => FailureKind::Unavailable,
        }
    }
}

impl SessionStore for FsStore {
    type Error = FsStoreError;

    async fn load(&self, id: &SessionId) -> Result<Option<Record>, FsStoreError> {
        let id = id.clone();
        self.blocking(move |inner| inner.load(&id, true)).await
    }

    /// Reads the file without refreshing its modification time (one write fewer).
    async fn read(&self, id: &SessionId) -> Result<Option<Record>, FsStoreError> {
        let id = id.clone();
        self.blocking(move |inner| inner.load(&id, false)).await
    }

    async fn create(&self, record: &Record) -> Result<SessionId, FsStoreError> {
        let record = record.clone();
        self.blocking(move |inner| inner.create(&record)).await
    }

    async fn update(&self, id: &SessionId, changes: &Changes) -> Result<Update, FsStoreError> {
        let (id, changes) = (id.clone(), changes.clone());
        self.blocking(move |inner| inner.update(&id, &changes))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), FsStoreError> {
        let id = id.clone();
        self.blocking(move |inner| inner.delete(&id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_errors_never_show_an_id() {
        let id = SessionId::generate();
        for path in [
            format!("/var/sessions/{}.json", id.as_str()),
            format!(
                "/var/sessions/.tmp-{}-{}.json",
                SessionId::generate().as_str(),
                id.as_str()
            ),
            format!("/var/sessions/.owners/{}/{}", "ab".repeat(32), id.as_str()),
        ] {
            let shown = redacted(Path::new(&path)).display().to_string();
            assert!(!shown.contains(id.as_str()), "{shown}");
            assert!(shown.contains(&id.short_hash()), "{shown}");
        }
        let plain = Path::new("/var/sessions/.locks/7");
        assert_eq!(redacted(plain), plain);
    }
}
