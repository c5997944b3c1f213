//! Where uploaded evaluation keys live: a bounded cache of expanded keys in memory, in front of
//! an optional redb file under the server's state directory.
//!
//! The file keeps the upload itself — the client's key frames as they came over the wire,
//! seeded, so about half the size of the expanded keys — behind the id of the model they were
//! requested for. After a restart a known key id is replayed through a fresh
//! [`KeyUpload`](super::KeyUpload), which checks every residue and the key id again: a damaged or
//! stale record is refused like a bad upload, and the client is asked to upload again. redb
//! commits are atomic, so a server killed mid-commit leaves the old record or the new one, never
//! a mix.
//!
//! Key ids are not authenticated (the protocol has no client identity): whoever uploads under a
//! public key's id (the latest upload replaces an earlier one) decides the evaluation keys used
//! for it. A wrong key can only make that client's results wrong; it reveals nothing about its
//! inputs. The number of stored uploads is capped; the oldest go first.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use client_core::wire::messages::KeyId;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::eval::EvalKeys;

/// key id → model id (32 bytes) ‖ the upload's frames, length-prefixed as on the wire.
const UPLOADS: TableDefinition<'static, &[u8; 32], &[u8]> = TableDefinition::new("key_uploads_v1");
/// key id → when it was stored (a counter), to drop the oldest records beyond the limit.
const STORED_AT: TableDefinition<'static, &[u8; 32], u64> =
    TableDefinition::new("key_stored_at_v1");

/// Uploads kept on disk unless the server says otherwise (about 140 MB each for MNIST).
pub const DEFAULT_MAX_STORED: usize = 64;

/// The file name under the state directory.
pub const KEY_STORE_FILE: &str = "keys.redb";

/// Why the key store failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The state directory or the database could not be opened.
    #[error("opening the key store {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A read or write failed.
    #[error("key store: {0}")]
    Db(#[from] redb::Error),
}

/// Evaluation keys by key id.
pub struct KeyStore {
    db: Option<Database>,
    max_stored: usize,
    /// Most recently used last.
    cache: Mutex<VecDeque<(KeyId, Arc<EvalKeys>)>>,
    capacity: usize,
}

impl KeyStore {
    /// Keys in memory only, at most `capacity` key sets (the oldest are dropped).
    pub fn memory(capacity: usize) -> Self {
        Self {
            db: None,
            max_stored: DEFAULT_MAX_STORED,
            cache: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
        }
    }

    /// Keys persisted under `dir` (created if missing), with `capacity` key sets cached and at
    /// most `max_stored` uploads on disk (the oldest stored is dropped first).
    pub fn open(dir: &Path, capacity: usize, max_stored: usize) -> Result<Self, KeyStoreError> {
        let path = dir.join(KEY_STORE_FILE);
        let fail = |message: String| KeyStoreError::Open {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            db: Some(db),
            max_stored: max_stored.max(1),
            ..Self::memory(capacity)
        })
    }

    /// True if uploads survive a restart.
    pub fn is_persistent(&self) -> bool {
        self.db.is_some()
    }

    /// The expanded keys of `id`, if cached.
    pub fn cached(&self, id: &KeyId) -> Option<Arc<EvalKeys>> {
        let mut cache = self.cache.lock().ok()?;
        let pos = cache.iter().position(|(k, _)| k == id)?;
        let entry = cache.remove(pos)?;
        let keys = entry.1.clone();
        cache.push_back(entry);
        Some(keys)
    }

    /// Caches `keys` under `id`, dropping the least recently used set beyond the capacity.
    pub fn remember(&self, id: KeyId, keys: Arc<EvalKeys>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(k, _)| *k != id);
            cache.push_back((id, keys));
            while cache.len() > self.capacity {
                cache.pop_front();
            }
        }
    }

    /// Key sets in memory.
    pub fn cached_len(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// The recorded upload of `id`, if one was stored for `model_id`.
    pub fn stored(
        &self,
        id: &KeyId,
        model_id: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, KeyStoreError> {
        let Some(db) = &self.db else {
            return Ok(None);
        };
        let txn = db.begin_read().map_err(redb::Error::from)?;
        let table = match txn.open_table(UPLOADS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(redb::Error::from(e).into()),
        };
        let Some(value) = table.get(id).map_err(redb::Error::from)? else {
            return Ok(None);
        };
        let value = value.value();
        match value.split_at_checked(model_id.len()) {
            Some((model, upload)) if model == model_id => Ok(Some(upload.to_vec())),
            _ => Ok(None),
        }
    }

    /// Stores the upload of `id` for `model_id`, replacing an older one and dropping the oldest
    /// records beyond the limit; durable on return.
    pub fn persist(
        &self,
        id: &KeyId,
        model_id: &[u8; 32],
        upload: &[u8],
    ) -> Result<(), KeyStoreError> {
        let Some(db) = &self.db else {
            return Ok(());
        };
        let mut value = Vec::with_capacity(model_id.len() + upload.len());
        value.extend_from_slice(model_id);
        value.extend_from_slice(upload);
        let txn = db.begin_write().map_err(redb::Error::from)?;
        {
            use redb::{ReadableTable, ReadableTableMetadata};
            let mut uploads = txn.open_table(UPLOADS).map_err(redb::Error::from)?;
            let mut stored_at = txn.open_table(STORED_AT).map_err(redb::Error::from)?;
            let mut order = Vec::new();
            for entry in stored_at.iter().map_err(redb::Error::from)? {
                let (k, v) = entry.map_err(redb::Error::from)?;
                order.push((v.value(), *k.value()));
            }
            let next = order.iter().map(|&(at, _)| at + 1).max().unwrap_or(0);
            order.retain(|(_, k)| k != id);
            order.sort_unstable();
            let excess = (order.len() + 1).saturating_sub(self.max_stored);
            for (_, old) in &order[..excess] {
                uploads.remove(old).map_err(redb::Error::from)?;
                stored_at.remove(old).map_err(redb::Error::from)?;
            }
            uploads
                .insert(id, value.as_slice())
                .map_err(redb::Error::from)?;
            stored_at.insert(id, next).map_err(redb::Error::from)?;
            debug_assert!(uploads.len().unwrap_or(0) as usize <= self.max_stored);
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Uploads on disk.
    pub fn stored_len(&self) -> Result<u64, KeyStoreError> {
        use redb::ReadableTableMetadata;
        let Some(db) = &self.db else {
            return Ok(0);
        };
        let txn = db.begin_read().map_err(redb::Error::from)?;
        match txn.open_table(UPLOADS) {
            Ok(t) => Ok(t.len().map_err(redb::Error::from)?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(redb::Error::from(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyStore;

    #[test]
    fn records_survive_reopening_and_the_oldest_go_beyond_the_limit() {
        let dir = std::env::temp_dir().join(format!("hefun-keystore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (model, other_model) = ([1u8; 32], [2u8; 32]);
        {
            let store = KeyStore::open(&dir, 1, 2).unwrap();
            store.persist(&[10; 32], &model, b"first").unwrap();
            store.persist(&[11; 32], &model, b"second").unwrap();
            // Replacing a record does not count twice.
            store.persist(&[10; 32], &model, b"first again").unwrap();
            assert_eq!(store.stored_len().unwrap(), 2);
            store.persist(&[12; 32], &model, b"third").unwrap();
            assert_eq!(store.stored_len().unwrap(), 2);
        }
        let store = KeyStore::open(&dir, 1, 2).unwrap();
        assert_eq!(
            store.stored(&[11; 32], &model).unwrap(),
            None,
            "oldest dropped"
        );
        assert_eq!(
            store.stored(&[10; 32], &model).unwrap().as_deref(),
            Some(&b"first again"[..])
        );
        assert_eq!(
            store.stored(&[12; 32], &model).unwrap().as_deref(),
            Some(&b"third"[..])
        );
        assert_eq!(store.stored(&[12; 32], &other_model).unwrap(), None);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
