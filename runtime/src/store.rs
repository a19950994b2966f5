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
//! on start, never an empty registry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, params};
use sha2::{Digest, Sha256};
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
";

#[derive(Debug, Error, Clone)]
pub enum StoreError {
    #[error("agent store {path}: cannot open: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("agent store {path} is unreadable or corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("agent store {path}: {detail}")]
    Restore { path: PathBuf, detail: String },
    #[error("agent store {path}: write failed: {detail}")]
    Write { path: PathBuf, detail: String },
    #[error("agent store {path}: the writer has stopped")]
    Closed { path: PathBuf },
}

/// One agent as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub seq: u64,
    pub agent_type: String,
    /// The SHA-256 of a custom module; `None` for a built-in type.
    pub module_hash: Option<String>,
    pub name: Option<String>,
    pub config: Option<String>,
    /// `Running` or `Failed` (the state `agent_init` left it in).
    pub state: String,
    pub created_at_ms: u64,
}

/// A custom module's bytes, under the type name it was registered as.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRecord {
    pub hash: String,
    pub type_name: String,
    pub bytes: Vec<u8>,
}

/// What the store held on start.
#[derive(Debug, Default)]
pub struct Contents {
    pub modules: Vec<ModuleRecord>,
    /// In creation order.
    pub agents: Vec<AgentRecord>,
}

/// The content hash a module is stored under.
pub fn module_hash(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

enum Write {
    Agent(AgentRecord),
    Module(ModuleRecord),
    Delete(String),
}

struct Op {
    write: Write,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle the runtime writes through; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    path: Arc<Path>,
    metrics: Arc<Metrics>,
    tracing: Tracing,
}

impl Store {
    /// Opens (or creates) the store at `path`, checks it and reads everything in it, and
    /// starts the writer thread.
    pub fn open(
        path: &Path,
        sync: StoreSync,
        metrics: Arc<Metrics>,
        tracing: Tracing,
    ) -> Result<(Store, Contents), StoreError> {
        let started = Instant::now();
        let mut span = store_span(&tracing, "store.load", "SELECT");
        let opened = open_checked(path, sync);
        let (conn, contents) = match opened {
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
                path: path.into(),
                metrics,
                tracing,
            },
            contents,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes an agent; returns once it is durable.
    pub async fn insert(&self, agent: AgentRecord) -> Result<(), StoreError> {
        self.submit("insert", "store.insert", "INSERT", Write::Agent(agent))
            .await
    }

    /// Removes an agent; returns once that is durable.
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
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
    pub fn insert_module_blocking(&self, module: ModuleRecord) -> Result<(), StoreError> {
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

    fn send(&self, write: Write) -> Result<oneshot::Receiver<Result<(), String>>, StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Op { write, done })
            .map_err(|_| self.closed())?;
        Ok(rx)
    }

    fn outcome(
        &self,
        received: Result<Result<(), String>, oneshot::error::RecvError>,
    ) -> Result<(), StoreError> {
        match received {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(StoreError::Write {
                path: self.path.to_path_buf(),
                detail,
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

fn open_checked(path: &Path, sync: StoreSync) -> Result<(Connection, Contents), StoreError> {
    let open_err = |detail: String| StoreError::Open {
        path: path.to_path_buf(),
        detail,
    };
    let corrupt = |e: rusqlite::Error| StoreError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_err(e.to_string()))?;
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
    let contents = read_all(&conn).map_err(corrupt)?;
    Ok((conn, contents))
}

fn read_all(conn: &Connection) -> rusqlite::Result<Contents> {
    let mut modules = Vec::new();
    let mut stmt = conn.prepare("SELECT hash, type_name, bytes FROM modules")?;
    let rows = stmt.query_map([], |r| {
        Ok(ModuleRecord {
            hash: r.get(0)?,
            type_name: r.get(1)?,
            bytes: r.get(2)?,
        })
    })?;
    for m in rows {
        modules.push(m?);
    }
    let mut agents = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT id, seq, agent_type, module_hash, name, config, state, created_at_ms
         FROM agents ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(AgentRecord {
            id: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            agent_type: r.get(2)?,
            module_hash: r.get(3)?,
            name: r.get(4)?,
            config: r.get(5)?,
            state: r.get(6)?,
            created_at_ms: r.get::<_, i64>(7)? as u64,
        })
    })?;
    for a in rows {
        agents.push(a?);
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
        let result = commit(&mut conn, &batch).map_err(|e| e.to_string());
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
            "INSERT OR REPLACE INTO agents
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
