//! Compiled custom agent types, bounded in bytes.
//!
//! An entry is a type name with the SHA-256 of its module bytes: the same module uploaded
//! again under the same name (or anonymously, as `custom-<digest>`) is compiled once. The
//! cache holds entries up to `[agents] module_cache_bytes` of compiled code plus module
//! bytes; past that, the least recently used entries that no agent holds are evicted.
//!
//! A name belongs to its module only while an agent of that type exists: an entry no agent
//! holds is replaced by a different module under the same name rather than refusing it
//! (409). So an upload that was refused after compiling (`max_agents`, `agent_init`) claims
//! no name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::wasm::AgentType;

pub(crate) type ModuleDigest = [u8; 32];

pub(crate) fn digest(bytes: &[u8]) -> ModuleDigest {
    Sha256::digest(bytes).into()
}

/// A digest in lowercase hex: the key the store keeps a module under.
pub(crate) fn hex(digest: &ModuleDigest) -> String {
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The name an anonymous upload gets: its digest's first 8 bytes in hex.
pub(crate) fn anonymous_name(digest: &ModuleDigest) -> String {
    let mut name = String::from("custom-");
    for b in &digest[..8] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

struct Entry {
    digest: ModuleDigest,
    ty: Arc<AgentType>,
    bytes: u64,
    last_used: u64,
}

impl Entry {
    /// The cache's own reference is the only one: no agent (and no create in flight) holds it.
    fn unused(&self) -> bool {
        Arc::strong_count(&self.ty) == 1
    }
}

#[derive(Default)]
struct Entries {
    by_name: HashMap<String, Entry>,
    bytes: u64,
    clock: u64,
}

/// What looking a name up found.
pub(crate) enum Lookup {
    /// Compiled before: the type, ready.
    Hit(Arc<AgentType>),
    /// Nothing under this name, or only an unused entry of another module (now removed).
    Miss,
    /// Another module holds this name and agents of it exist.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the module cache is full: this module needs {needed} bytes and agents hold {held} of \
     agents.module_cache_bytes ({capacity}); delete agents of unused custom types or raise it"
)]
pub struct CacheFull {
    pub(crate) needed: u64,
    pub(crate) held: u64,
    pub(crate) capacity: u64,
}

pub(crate) struct ModuleCache {
    capacity: u64,
    entries: Mutex<Entries>,
}

impl ModuleCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every critical section is a few map operations: consistent even after a panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The type registered under `name`, whatever its module (for `agent_type: name`).
    pub(crate) fn by_name(&self, name: &str) -> Option<Arc<AgentType>> {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        e.by_name.get_mut(name).map(|entry| {
            entry.last_used = now;
            entry.ty.clone()
        })
    }

    /// The digest of the module registered under `name`, if any.
    pub(crate) fn digest_of(&self, name: &str) -> Option<ModuleDigest> {
        self.lock().by_name.get(name).map(|entry| entry.digest)
    }

    pub(crate) fn lookup(&self, name: &str, digest: &ModuleDigest) -> Lookup {
        let mut e = self.lock();
        e.clock += 1;
        let now = e.clock;
        let Some(entry) = e.by_name.get_mut(name) else {
            return Lookup::Miss;
        };
        if entry.digest == *digest {
            entry.last_used = now;
            return Lookup::Hit(entry.ty.clone());
        }
        if !entry.unused() {
            return Lookup::Conflict;
        }
        if let Some(old) = e.by_name.remove(name) {
            e.bytes -= old.bytes;
        }
        Lookup::Miss
    }

    /// Bytes held by entries agents use: what eviction cannot free.
    fn held(e: &Entries) -> u64 {
        e.by_name
            .values()
            .filter(|x| !x.unused())
            .map(|x| x.bytes)
            .sum()
    }

    /// Refuses, before compiling, a module that could not fit even with every unused entry
    /// evicted (its compiled code is at least as large as its bytes).
    pub(crate) fn precheck(&self, module_bytes: u64) -> Result<(), CacheFull> {
        let e = self.lock();
        let held = Self::held(&e);
        if held.saturating_add(module_bytes) > self.capacity {
            return Err(CacheFull {
                needed: module_bytes,
                held,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Adds a compiled type, evicting least recently used unused entries to stay in bounds.
    pub(crate) fn insert(
        &self,
        name: String,
        digest: ModuleDigest,
        ty: Arc<AgentType>,
        bytes: u64,
    ) -> Result<(), CacheFull> {
        let mut e = self.lock();
        while e.bytes.saturating_add(bytes) > self.capacity {
            let victim = e
                .by_name
                .iter()
                .filter(|(_, x)| x.unused())
                .min_by_key(|(_, x)| x.last_used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else {
                return Err(CacheFull {
                    needed: bytes,
                    held: Self::held(&e),
                    capacity: self.capacity,
                });
            };
            if let Some(old) = e.by_name.remove(&victim) {
                e.bytes -= old.bytes;
                tracing::debug!(agent_type = %victim, bytes = old.bytes, "module evicted");
            }
        }
        e.clock += 1;
        let last_used = e.clock;
        e.bytes += bytes;
        if let Some(old) = e.by_name.insert(
            name,
            Entry {
                digest,
                ty,
                bytes,
                last_used,
            },
        ) {
            e.bytes -= old.bytes;
        }
        Ok(())
    }

    /// Entries and their bytes, for tests and diagnostics.
    pub(crate) fn usage(&self) -> (usize, u64) {
        let e = self.lock();
        (e.by_name.len(), e.bytes)
    }
}
