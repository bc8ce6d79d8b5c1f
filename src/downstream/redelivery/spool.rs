//! The spool: queued changes on disk, so that a `202` survives a restart, a SIGKILL or an OOM
//! kill.
//!
//! - Each call that queues changes writes one file holding them (a delivery's changes for one
//!   downstream): written to a temporary name, fsynced, renamed into place, then the directory
//!   fsynced, and only then is the `202` sent. Concurrent writers share the directory's fsync
//!   (one fsync covers every rename made before it started).
//! - A file is removed once every change in it is delivered or given up on. Removal is not
//!   fsynced: a file that comes back after a crash is delivered again, which is harmless (a
//!   notification is a hint to look again).
//! - At start every file is read back with the time its changes were first queued; a file that
//!   cannot be read or parsed is renamed `*.bad` and reported, never a crash; temporary files
//!   (never acknowledged) are removed.
//! - The directory is locked (`lock`, an advisory lock held while the process lives): a second
//!   flux-recv on the same spool refuses to start.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::change::{Change, ImageName};
use crate::downstream::lock;

/// A spool file larger than this is not one of ours (100 changes of 4 KiB names are ~500 KiB).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const SUFFIX: &str = ".json";
const TEMPORARY: &str = ".tmp-";
const LOCK_FILE: &str = "lock";

/// What the spool does to the disk, so that a test can hold the order of its steps.
pub trait Disk: Send + Sync {
    /// Writes `bytes` to a new file at `path` and fsyncs it.
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Fsyncs the directory, so that renames into it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
pub struct RealDisk;

impl Disk for RealDisk {
    fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = File::create(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
}

/// One queued change as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub downstream: String,
    pub change: Change,
    /// When it was first queued, in milliseconds since the Unix epoch.
    pub queued_ms: u64,
    /// The id of the delivery that queued it.
    pub request_id: Option<String>,
}

/// A file in place, and how many of its changes are still pending.
#[derive(Debug)]
pub struct SpoolFile {
    path: PathBuf,
    pending: AtomicUsize,
    bytes: u64,
}

/// Directory fsyncs shared by concurrent writers: a writer that renamed its file before a sync
/// started is covered by that sync.
#[derive(Default)]
struct DirSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Renames made so far (tickets handed out).
    renamed: u64,
    /// Every ticket up to this one is durable.
    synced: u64,
    running: bool,
    /// The last sync's failure, for the tickets it covered.
    failed_upto: u64,
}

pub struct Spool {
    dir: PathBuf,
    disk: Box<dyn Disk>,
    /// Held while the process lives: the directory's advisory lock.
    _lock: Option<File>,
    dir_sync: DirSync,
    /// Makes file names unique across processes (start time) and within one (a counter).
    prefix: String,
    next: AtomicU64,
    /// Changes pending in files, and the files' bytes.
    records: AtomicUsize,
    bytes: AtomicU64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Spool {
    /// Opens (creating it if needed) and locks the spool directory.
    pub fn open(dir: &Path) -> Result<Spool, String> {
        let fail = |what: &str, e: io::Error| {
            format!(
                "--spool {}: {what}: {e}; point --spool at a directory this user may write (e.g. systemd's StateDirectory=, a Kubernetes volume)",
                dir.display()
            )
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| fail("cannot open its lock file", e))?;
        if lock_file.try_lock().is_err() {
            return Err(format!(
                "--spool {}: another flux-recv is using this spool (its lock is held); give each process its own spool directory",
                dir.display()
            ));
        }
        let mut spool = Spool::with_disk(dir, Box::new(RealDisk));
        spool._lock = Some(lock_file);
        Ok(spool)
    }

    /// A spool on `disk` without a lock (tests).
    pub fn with_disk(dir: &Path, disk: Box<dyn Disk>) -> Spool {
        Spool {
            dir: dir.to_owned(),
            disk,
            _lock: None,
            dir_sync: DirSync::default(),
            prefix: format!("{:x}", now_ms()),
            next: AtomicU64::new(0),
            records: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Changes pending on disk, and the bytes of their files.
    pub fn stats(&self) -> (usize, u64) {
        (
            self.records.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }

    /// Writes `records` durably as one file; returns once the file and its name are on disk.
    pub fn write(&self, records: &[Record]) -> io::Result<std::sync::Arc<SpoolFile>> {
        let bytes = encode(records);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let name = format!("{}-{n:08x}{SUFFIX}", self.prefix);
        let temporary = self.dir.join(format!("{TEMPORARY}{name}"));
        let path = self.dir.join(&name);
        if let Err(e) = self.disk.write_synced(&temporary, &bytes) {
            let _ = self.disk.remove(&temporary);
            return Err(e);
        }
        if let Err(e) = self.disk.rename(&temporary, &path) {
            let _ = self.disk.remove(&temporary);
            return Err(e);
        }
        if let Err(e) = self.sync_dir() {
            let _ = self.disk.remove(&path);
            return Err(e);
        }
        self.records.fetch_add(records.len(), Ordering::SeqCst);
        self.bytes.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(std::sync::Arc::new(SpoolFile {
            path,
            pending: AtomicUsize::new(records.len()),
            bytes: bytes.len() as u64,
        }))
    }

    /// One fsync of the directory covering this writer's rename, shared with concurrent ones.
    fn sync_dir(&self) -> io::Result<()> {
        let mut state = lock(&self.dir_sync.state);
        state.renamed += 1;
        let ticket = state.renamed;
        loop {
            if state.synced >= ticket {
                return if state.failed_upto >= ticket {
                    Err(io::Error::other("fsync of the spool directory failed"))
                } else {
                    Ok(())
                };
            }
            if !state.running {
                state.running = true;
                let upto = state.renamed;
                drop(state);
                let synced = self.disk.sync_dir(&self.dir);
                state = lock(&self.dir_sync.state);
                state.running = false;
                state.synced = upto;
                if synced.is_err() {
                    state.failed_upto = upto;
                }
                self.dir_sync.done.notify_all();
                continue;
            }
            state = self
                .dir_sync
                .done
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One change of `file` is delivered or given up on; the last one removes the file.
    pub fn resolved(&self, file: &SpoolFile) {
        self.records.fetch_sub(1, Ordering::SeqCst);
        if file.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.bytes.fetch_sub(file.bytes, Ordering::SeqCst);
            let _ = self.disk.remove(&file.path);
        }
    }

    /// Reads every file back: the changes with their files, and a warning per file that could
    /// not be read (renamed `*.bad`). Temporary files, never acknowledged, are removed.
    pub fn load(&self) -> (Vec<(Record, std::sync::Arc<SpoolFile>)>, Vec<String>) {
        let (mut found, mut warnings) = (Vec::new(), Vec::new());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (found, warnings);
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let path = self.dir.join(&name);
            if name.starts_with(TEMPORARY) {
                let _ = self.disk.remove(&path);
                continue;
            }
            if !name.ends_with(SUFFIX) {
                continue;
            }
            match read(&path) {
                Ok((records, bytes)) => {
                    let file = std::sync::Arc::new(SpoolFile {
                        path,
                        pending: AtomicUsize::new(records.len()),
                        bytes,
                    });
                    self.records.fetch_add(records.len(), Ordering::SeqCst);
                    self.bytes.fetch_add(bytes, Ordering::SeqCst);
                    found.extend(
                        records
                            .into_iter()
                            .map(|r| (r, std::sync::Arc::clone(&file))),
                    );
                }
                Err(why) => {
                    let aside = self.dir.join(format!("{name}.bad"));
                    let _ = self.disk.rename(&path, &aside);
                    warnings.push(format!(
                        "spool file {} cannot be read back ({why}); moved aside to {}",
                        path.display(),
                        aside.display()
                    ));
                }
            }
        }
        (found, warnings)
    }
}

/// A spool file: `{"records":[{"downstream":…,"queued_ms":…,"url":…,"branch":…}]}`, an image
/// change with `domain` and `image` instead (flat, so that it costs no tagged-enum code).
#[derive(Serialize, Deserialize)]
struct FileBody {
    records: Vec<Stored>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct Stored {
    downstream: String,
    queued_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn encode(records: &[Record]) -> Vec<u8> {
    let body = FileBody {
        records: records
            .iter()
            .map(|r| {
                let stored = Stored {
                    downstream: r.downstream.clone(),
                    queued_ms: r.queued_ms,
                    request_id: r.request_id.clone(),
                    ..Stored::default()
                };
                match &r.change {
                    Change::Git { url, branch } => Stored {
                        url: Some(url.clone()),
                        branch: Some(branch.clone()),
                        ..stored
                    },
                    Change::Image(name) => Stored {
                        domain: Some(name.domain.clone()),
                        image: Some(name.image.clone()),
                        ..stored
                    },
                }
            })
            .collect(),
    };
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

fn read(path: &Path) -> Result<(Vec<Record>, u64), String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let body: FileBody = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if body.records.is_empty() {
        return Err("no change in it".into());
    }
    let records = body
        .records
        .into_iter()
        .map(|s| {
            let change = match (s.url, s.branch, s.domain, s.image) {
                (Some(url), Some(branch), None, None) => Change::Git { url, branch },
                (None, None, Some(domain), Some(image)) => {
                    Change::Image(ImageName { domain, image })
                }
                _ => return Err("a record is neither a git nor an image change".to_owned()),
            };
            Ok(Record {
                downstream: s.downstream,
                queued_ms: s.queued_ms,
                change,
                // Sent as a header: kept only when it could have come from us.
                request_id: s
                    .request_id
                    .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((records, bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the spool does to the disk, in order, and does it for real.
    #[derive(Default)]
    struct Recording(Mutex<Vec<String>>);

    impl Disk for std::sync::Arc<Recording> {
        fn write_synced(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
            lock(&self.0).push(format!("write+fsync {}", name(path)));
            RealDisk.write_synced(path, bytes)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            lock(&self.0).push(format!("rename {} {}", name(from), name(to)));
            RealDisk.rename(from, to)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            lock(&self.0).push("fsync dir".into());
            RealDisk.sync_dir(dir)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            lock(&self.0).push(format!("remove {}", name(path)));
            RealDisk.remove(path)
        }
    }

    fn name(path: &Path) -> String {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with(TEMPORARY) {
            "tmp".into()
        } else {
            "file".into()
        }
    }

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "flux-recv-spool-{tag}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn record(branch: &str) -> Record {
        Record {
            downstream: "cluster-a".into(),
            change: Change::git("git@h:o/r.git", branch),
            queued_ms: 1_700_000_000_000,
            request_id: Some("delivery-1".into()),
        }
    }

    /// A SIGKILL test passes even with no fsync at all, so the order is held here: the file is
    /// written and fsynced under a temporary name, renamed, the directory fsynced, and only
    /// then does `write` return (and the 202 go out).
    #[test]
    fn a_write_is_durable_before_it_returns() {
        let dir = temp("order");
        let ops = std::sync::Arc::new(Recording::default());
        let spool = Spool::with_disk(&dir, Box::new(std::sync::Arc::clone(&ops)));
        let file = spool.write(&[record("main"), record("dev")]).unwrap();
        lock(&ops.0).push("returned".into());
        assert_eq!(
            *lock(&ops.0),
            [
                "write+fsync tmp",
                "rename tmp file",
                "fsync dir",
                "returned"
            ]
        );
        assert_eq!(spool.stats().0, 2);
        // Removed when its last change is resolved, not before.
        spool.resolved(&file);
        assert!(file.path.exists());
        spool.resolved(&file);
        assert!(!file.path.exists());
        assert_eq!(spool.stats(), (0, 0));
    }

    #[test]
    fn what_is_written_is_read_back_and_what_is_broken_is_moved_aside() {
        let dir = temp("load");
        let spool = Spool::with_disk(&dir, Box::new(RealDisk));
        spool.write(&[record("main")]).unwrap();
        spool
            .write(&[Record {
                downstream: "cluster-b".into(),
                change: Change::image("registry.example.com/team/app:1.0").unwrap(),
                queued_ms: 42,
                request_id: None,
            }])
            .unwrap();
        std::fs::write(dir.join("broken.json"), b"{\"records\":[").unwrap();
        std::fs::write(dir.join(".tmp-half.json"), b"{").unwrap();
        let again = Spool::with_disk(&dir, Box::new(RealDisk));
        let (found, warnings) = again.load();
        let records: Vec<Record> = found.into_iter().map(|(r, _)| r).collect();
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(records.contains(&record("main")));
        assert!(records
            .iter()
            .any(|r| r.downstream == "cluster-b" && r.queued_ms == 42));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("broken.json"), "{warnings:?}");
        assert!(dir.join("broken.json.bad").exists());
        assert!(!dir.join(".tmp-half.json").exists());
        assert_eq!(again.stats().0, 2);
    }

    #[test]
    fn a_second_process_cannot_take_the_same_spool() {
        let dir = temp("lock");
        let first = Spool::open(&dir).unwrap();
        let second = Spool::open(&dir).err().unwrap_or_default();
        assert!(second.contains("another flux-recv"), "{second}");
        drop(first);
        assert!(Spool::open(&dir).is_ok());
    }

    #[test]
    fn concurrent_writers_share_directory_fsyncs_and_all_are_durable() {
        let dir = temp("group");
        let ops = std::sync::Arc::new(Recording::default());
        let spool = std::sync::Arc::new(Spool::with_disk(
            &dir,
            Box::new(std::sync::Arc::clone(&ops)),
        ));
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let spool = std::sync::Arc::clone(&spool);
                std::thread::spawn(move || spool.write(&[record(&format!("b{i}"))]).is_ok())
            })
            .collect();
        assert!(writers.into_iter().all(|w| w.join().unwrap()));
        let ops = lock(&ops.0).clone();
        let syncs = ops.iter().filter(|o| *o == "fsync dir").count();
        assert!((1..=8).contains(&syncs), "{ops:?}");
        // Every rename comes before some directory fsync.
        let last_sync = ops.iter().rposition(|o| o == "fsync dir").unwrap();
        let last_rename = ops.iter().rposition(|o| o.starts_with("rename")).unwrap();
        assert!(last_rename < last_sync, "{ops:?}");
        assert_eq!(spool.stats().0, 8);
    }
}
