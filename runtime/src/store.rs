//! The agent registry on disk: one SQLite file (`rusqlite`, bundled) under `data_dir`.
//!
//! The in-memory registry (`runtime.rs`) stays the read path; the store is written before a
//! create or delete is acknowledged, and read once, on start. One writer thread owns the
//! connection: each round it takes everything queued and writes it in one transaction, so
//! concurrent creates share one commit (and its fsync: WAL with `synchronous = FULL`, or
//! none with `[server] store_sync = "normal"`).
//!
//! Tables: `agents` (id, seq, type, module hash, name, config, state, created_at) and
//! `modules` (the bytes of custom modules by SHA-256, so each is stored once however many
//! agents run it). Store errors name the file; an unreadable or corrupt file is an error
//! on start, never an empty registry, and a failed start leaves the files as they were
//! (WAL included). `seq` is unique in the table (an index) and continues from the largest
//! stored one; `data_dir` is locked (`caxton.lock`, flock) so one runtime owns the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, params};
use thiserror::Error;
use tokio::sync::oneshot;

use crate::config::StoreSync;
use crate::metrics::Metrics;
use crate::telemetry::Tracing;
use crate::telemetry::trace_context::store_span;

/// The store's file in `data_dir`.
pub const FILE_NAME: &str = "registry.sqlite3";

/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Most operations one commit takes: bounds the latency of the last in a long queue.
const MAX_BATCH: usize = 4096;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS modules (
    hash TEXT PRIMARY KEY,
    type_name TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    agent_type TEXT NOT NULL,
    module_hash TEXT REFERENCES modules(hash),
    name TEXT,
    config TEXT,
    state TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS agents_seq ON agents(seq);
";

/// The lock file in `data_dir`: held (`flock`) for the life of the process that owns the
/// store, and holding that process's pid.
pub(crate) const LOCK_FILE_NAME: &str = "caxton.lock";

/// The latest `created_at_ms` a stored agent may have: 9999-12-31T23:59:59.999Z.
pub(crate) const MAX_CREATED_AT_MS: i64 = 253_402_300_799_999;

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("agent store {path}: cannot open: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("agent store {path} is unreadable or corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("agent store {path}: the disk is full: {detail}")]
    DiskFull { path: PathBuf, detail: String },
    #[error("agent store {path} is read-only: {detail}")]
    ReadOnly { path: PathBuf, detail: String },
    #[error(
        "data_dir {dir} is in use by another caxton (pid {holder}, lock file {lock}); \
         one runtime per data_dir"
    )]
    Locked {
        dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("agent store {path}: cannot lock {lock}: {detail}")]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        detail: String,
    },
    #[error("agent store {path}: {detail}")]
    Restore { path: PathBuf, detail: String },
    #[error("agent store {path}: write failed: {source}")]
    Write {
        path: PathBuf,
        /// Shared: one failed commit answers every write of its batch.
        source: Arc<rusqlite::Error>,
    },
    #[error("agent store {path}: the writer has stopped")]
    Closed { path: PathBuf },
}

/// One agent as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentRecord {
    pub(crate) id: String,
    pub(crate) seq: u64,
    pub(crate) agent_type: String,
    /// The SHA-256 of a custom module; `None` for a built-in type.
    pub(crate) module_hash: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) config: Option<String>,
    /// `Running` or `Failed` (the state `agent_init` left it in).
    pub(crate) state: String,
    pub(crate) created_at_ms: u64,
}

/// A custom module's bytes, under the type name it was registered as.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModuleRecord {
    pub(crate) hash: String,
    pub(crate) type_name: String,
    pub(crate) bytes: Vec<u8>,
}

/// What the store held on start.
#[derive(Debug, Default)]
pub(crate) struct Contents {
    pub(crate) modules: Vec<ModuleRecord>,
    /// In creation order.
    pub(crate) agents: Vec<AgentRecord>,
}

enum Write {
    Agent(AgentRecord),
    Module(ModuleRecord),
    Delete(String),
}

/// A batch's commit, told to each of its writes.
type CommitResult = Result<(), Arc<rusqlite::Error>>;

struct Op {
    write: Write,
    done: oneshot::Sender<CommitResult>,
}

/// The handle the runtime writes through; cheap to clone.
#[derive(Clone)]
pub(crate) struct Store {
    tx: mpsc::Sender<Op>,
    /// The `data_dir` lock, released when the last handle goes (at exit).
    _lock: Arc<DirLock>,
    path: Arc<Path>,
    metrics: Arc<Metrics>,
    tracing: Tracing,
}

impl Store {
    /// Opens (or creates) the store at `path`, checks it and reads everything in it, and
    /// starts the writer thread.
    pub(crate) fn open(
        path: &Path,
        sync: StoreSync,
        metrics: Arc<Metrics>,
        tracing: Tracing,
    ) -> Result<(Store, Contents), StoreError> {
        let started = Instant::now();
        let mut span = store_span(&tracing, "store.load", "SELECT");
        let opened = DirLock::acquire(path).and_then(|lock| {
            open_checked(path, sync).map(|(conn, contents)| (lock, conn, contents))
        });
        let (lock, conn, contents) = match opened {
            Ok(x) => x,
            Err(e) => {
                span.set_error();
                return Err(e);
            }
        };
        span.set_attribute(opentelemetry::KeyValue::new(
            "caxton.store.agents",
            contents.agents.len() as i64,
        ));
        span.end();
        metrics.store_operation("load", started.elapsed().as_secs_f64());
        let (tx, rx) = mpsc::channel();
        let shown = path.to_path_buf();
        std::thread::Builder::new()
            .name("caxton-store".into())
            .spawn(move || writer(conn, rx, &shown))
            .map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok((
            Store {
                tx,
                _lock: Arc::new(lock),
                path: path.into(),
                metrics,
                tracing,
            },
            contents,
        ))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes an agent; returns once it is durable.
    pub(crate) async fn insert(&self, agent: AgentRecord) -> Result<(), StoreError> {
        self.submit("insert", "store.insert", "INSERT", Write::Agent(agent))
            .await
    }

    /// Removes an agent; returns once that is durable.
    pub(crate) async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.submit(
            "delete",
            "store.delete",
            "DELETE",
            Write::Delete(id.to_owned()),
        )
        .await
    }

    /// Writes a module (once per hash) and waits for it: for blocking threads, where
    /// modules are compiled.
    pub(crate) fn insert_module_blocking(&self, module: ModuleRecord) -> Result<(), StoreError> {
        let started = Instant::now();
        let rx = self.send(Write::Module(module))?;
        let result = self.outcome(rx.blocking_recv());
        self.metrics
            .store_operation("insert", started.elapsed().as_secs_f64());
        result
    }

    async fn submit(
        &self,
        operation: &'static str,
        span_name: &'static str,
        db_operation: &'static str,
        write: Write,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut span = store_span(&self.tracing, span_name, db_operation);
        let result = match self.send(write) {
            Ok(rx) => self.outcome(rx.await),
            Err(e) => Err(e),
        };
        if result.is_err() {
            span.set_error();
        }
        span.end();
        self.metrics
            .store_operation(operation, started.elapsed().as_secs_f64());
        result
    }

    fn send(&self, write: Write) -> Result<oneshot::Receiver<CommitResult>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op { write, done })
            .map_err(|_| self.closed())?;
        Ok(rx)
    }

    fn outcome(
        &self,
        received: Result<CommitResult, oneshot::error::RecvError>,
    ) -> Result<(), StoreError> {
        match received {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(StoreError::Write {
                path: self.path.to_path_buf(),
                source,
            }),
            Err(_) => Err(self.closed()),
        }
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.path.to_path_buf(),
        }
    }
}

/// The exclusive lock on `data_dir`: one runtime per store. `flock` on `caxton.lock`, held
/// by the open file for the life of the process (the kernel drops it when the process dies,
/// `kill -9` included); the file holds the holder's pid for the message of the next one.
pub(crate) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Locks the directory of the store at `store`, creating it if needed.
    pub(crate) fn acquire(store: &Path) -> Result<DirLock, StoreError> {
        use std::io::{Read, Seek, Write as _};
        use std::os::fd::AsRawFd;
        let dir = store
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| io_error(store, format!("cannot create {}", dir.display()), &e))?;
        let lock = dir.join(LOCK_FILE_NAME);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(|e| io_error(store, format!("cannot open {}", lock.display()), &e))?;
        // SAFETY: flock on a file descriptor this function owns for the call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    lock,
                    holder: if holder.is_empty() {
                        "unknown".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            return Err(StoreError::Lock {
                path: store.to_path_buf(),
                lock,
                detail: e.to_string(),
            });
        }
        let wrote = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        wrote.map_err(|e| io_error(store, format!("cannot write {}", lock.display()), &e))?;
        Ok(DirLock { _file: file })
    }
}

/// An I/O error on the store, classified: disk full, read-only, or another open failure.
fn io_error(path: &Path, what: String, e: &std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    let detail = format!("{what}: {e}");
    match (e.kind(), e.raw_os_error()) {
        (std::io::ErrorKind::StorageFull, _) | (_, Some(libc::ENOSPC | libc::EDQUOT)) => {
            StoreError::DiskFull { path, detail }
        }
        (std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied, _)
        | (_, Some(libc::EROFS | libc::EACCES | libc::EPERM)) => {
            StoreError::ReadOnly { path, detail }
        }
        _ => StoreError::Open { path, detail },
    }
}

/// An SQLite error on start, classified: disk full, read-only, or unreadable/corrupt.
pub(crate) fn classify(path: &Path, e: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    let detail = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path, detail },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            StoreError::ReadOnly { path, detail }
        }
        Some(ErrorCode::CannotOpen) => StoreError::Open { path, detail },
        _ => StoreError::Corrupt { path, detail },
    }
}

/// `<store>-wal`, SQLite's write-ahead log next to the database file.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

fn file_len(path: &Path, store: &Path) -> Result<Option<u64>, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(
            store,
            format!("cannot stat {}", path.display()),
            &e,
        )),
    }
}

fn open_checked(path: &Path, sync: StoreSync) -> Result<(Connection, Contents), StoreError> {
    // A WAL without its database: SQLite would start an empty database and discard the
    // log's committed writes. Refused, and nothing is touched.
    let wal = wal_path(path);
    let main_len = file_len(path, path)?;
    let wal_len = file_len(&wal, path)?.unwrap_or(0);
    if main_len.unwrap_or(0) == 0 && wal_len > 0 {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "the database file is {} but its write-ahead log {} holds {wal_len} bytes; \
                 left untouched (restore the database file, or move the log away to start empty)",
                if main_len.is_none() {
                    "missing"
                } else {
                    "empty"
                },
                wal.display()
            ),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, &e))?;
    // Until the store is checked, closing the connection must not checkpoint (and then
    // delete) the write-ahead log: a failed start leaves the files as they were.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(|e| classify(path, &e))?;
    let corrupt = |e: rusqlite::Error| classify(path, &e);
    // Reading the header is the first access: a file that is not SQLite fails here.
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(corrupt)?;
    if check != "ok" {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("quick_check: {check}"),
        });
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(corrupt)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Restore {
            path: path.to_path_buf(),
            detail: format!("schema version {version} is newer than this build's {SCHEMA_VERSION}"),
        });
    }
    // Read and checked before anything is written: a row that cannot be restored stops the
    // start with the file as it was.
    let has_agents: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'agents'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(corrupt)?
        > 0;
    if has_agents {
        read_all(&conn, path)?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    // FULL: a commit is on disk (WAL fsynced) before it returns, so an acknowledged create
    // survives a power loss. NORMAL: the WAL is fsynced only at checkpoints; a commit
    // survives the process, not the machine.
    let synchronous = match sync {
        StoreSync::Full => "FULL",
        StoreSync::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(corrupt)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(corrupt)?;
    conn.execute_batch(SCHEMA).map_err(corrupt)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(corrupt)?;
    let contents = read_all(&conn, path)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        false,
    )
    .map_err(corrupt)?;
    Ok((conn, contents))
}

/// Everything in the store, each agent row checked: a row that cannot be restored is an
/// error naming it.
fn read_all(conn: &Connection, path: &Path) -> Result<Contents, StoreError> {
    let corrupt = |e: rusqlite::Error| classify(path, &e);
    let bad_row = |id: &str, detail: String| StoreError::Restore {
        path: path.to_path_buf(),
        detail: format!("agent row `{id}`: {detail}"),
    };
    let mut modules = Vec::new();
    let mut stmt = conn
        .prepare("SELECT hash, type_name, bytes FROM modules")
        .map_err(corrupt)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(ModuleRecord {
                hash: r.get(0)?,
                type_name: r.get(1)?,
                bytes: r.get(2)?,
            })
        })
        .map_err(corrupt)?;
    for m in rows {
        modules.push(m.map_err(corrupt)?);
    }
    let mut agents = Vec::new();
    let mut stmt = conn
        .prepare(
            "SELECT id, seq, agent_type, module_hash, name, config, state, created_at_ms
             FROM agents ORDER BY seq",
        )
        .map_err(corrupt)?;
    let mut rows = stmt.query([]).map_err(corrupt)?;
    let mut last_seq: Option<u64> = None;
    while let Some(r) = rows.next().map_err(corrupt)? {
        let id: String = r.get(0).map_err(|e| bad_row("?", format!("id: {e}")))?;
        let field = |n: &str, e: rusqlite::Error| bad_row(&id, format!("{n}: {e}"));
        let seq: i64 = r.get(1).map_err(|e| field("seq", e))?;
        let seq = u64::try_from(seq).map_err(|_| bad_row(&id, format!("seq {seq} is negative")))?;
        if last_seq == Some(seq) {
            return Err(bad_row(&id, format!("seq {seq} is taken by another agent")));
        }
        last_seq = Some(seq);
        let created: i64 = r.get(7).map_err(|e| field("created_at_ms", e))?;
        if !(0..=MAX_CREATED_AT_MS).contains(&created) {
            return Err(bad_row(
                &id,
                format!("created_at_ms {created} is out of range (0..={MAX_CREATED_AT_MS})"),
            ));
        }
        let config: Option<String> = r.get(5).map_err(|e| field("config", e))?;
        if let Some(c) = &config
            && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(c)
        {
            return Err(bad_row(&id, format!("config is not valid JSON: {e}")));
        }
        agents.push(AgentRecord {
            seq,
            agent_type: r.get(2).map_err(|e| field("agent_type", e))?,
            module_hash: r.get(3).map_err(|e| field("module_hash", e))?,
            name: r.get(4).map_err(|e| field("name", e))?,
            config,
            state: r.get(6).map_err(|e| field("state", e))?,
            created_at_ms: created as u64,
            id,
        });
    }
    Ok(Contents { modules, agents })
}

/// The writer thread: one transaction per round of whatever is queued.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Op>, path: &Path) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = commit(&mut conn, &batch).map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(store = %path.display(), error = %e, writes = batch.len(), "agent store commit failed");
        }
        for op in batch {
            let _ = op.done.send(result.clone());
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Op]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut agent = tx.prepare_cached(
            "INSERT INTO agents
             (id, seq, agent_type, module_hash, name, config, state, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut module = tx.prepare_cached(
            "INSERT OR IGNORE INTO modules (hash, type_name, bytes) VALUES (?1, ?2, ?3)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM agents WHERE id = ?1")?;
        for op in batch {
            match &op.write {
                Write::Agent(a) => {
                    agent.execute(params![
                        a.id,
                        a.seq as i64,
                        a.agent_type,
                        a.module_hash,
                        a.name,
                        a.config,
                        a.state,
                        a.created_at_ms as i64
                    ])?;
                }
                Write::Module(m) => {
                    module.execute(params![m.hash, m.type_name, m.bytes])?;
                }
                Write::Delete(id) => {
                    delete.execute(params![id])?;
                }
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn start_errors_tell_disk_full_read_only_and_corrupt_apart() {
        let p = Path::new("/d/registry.sqlite3");
        let full = classify(p, &sqlite(rusqlite::ffi::SQLITE_FULL)).to_string();
        assert!(
            full.starts_with("agent store /d/registry.sqlite3: the disk is full"),
            "{full}"
        );
        let ro = classify(p, &sqlite(rusqlite::ffi::SQLITE_READONLY)).to_string();
        assert!(
            ro.starts_with("agent store /d/registry.sqlite3 is read-only"),
            "{ro}"
        );
        let bad = classify(p, &sqlite(rusqlite::ffi::SQLITE_NOTADB)).to_string();
        assert!(
            bad.starts_with("agent store /d/registry.sqlite3 is unreadable or corrupt"),
            "{bad}"
        );
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(
            io_error(p, "x".into(), &e),
            StoreError::DiskFull { .. }
        ));
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        assert!(matches!(
            io_error(p, "x".into(), &e),
            StoreError::ReadOnly { .. }
        ));
    }

    #[test]
    fn a_second_lock_on_a_data_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join(FILE_NAME);
        let _held = DirLock::acquire(&store).unwrap();
        // flock locks belong to the open file description: a second open conflicts even
        // within one process.
        let Err(e) = DirLock::acquire(&store) else {
            panic!("locked twice")
        };
        let shown = e.to_string();
        assert!(
            shown.contains(&format!(
                "data_dir {} is in use by another caxton (pid {},",
                dir.path().display(),
                std::process::id()
            )),
            "{shown}"
        );
    }
}
