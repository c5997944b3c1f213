//! The device's persistent store for its key seed record ([`KeySeed::to_record`]): one 64-byte
//! record that survives a reboot, so the device keeps its key id and the server's copy of its
//! evaluation keys.
//!
//! Under QEMU the "flash page" is a host file named by the `keys=<path>` semihosting argument,
//! read and written with the SYS_OPEN/READ/WRITE/CLOSE calls. On hardware it is a flash sector
//! of its own, kept out of reach of debuggers (readout protection) — the record is the secret
//! key. Without `keys=` the firmware makes a new key seed at every boot and uploads its keys
//! again.
//!
//! [`KeySeed::to_record`]: client_core::client::KeySeed::to_record

use client_core::client::SEED_RECORD_BYTES;
use cortex_m_semihosting::{nr, syscall};

/// Longest path accepted (plus its NUL).
pub const MAX_PATH: usize = 160;

/// A NUL-terminated host path.
pub struct StorePath {
    bytes: [u8; MAX_PATH + 1],
    len: usize,
}

impl StorePath {
    /// The path, or `None` if it is empty or too long.
    pub fn new(path: &[u8]) -> Option<Self> {
        if path.is_empty() || path.len() > MAX_PATH || path.contains(&0) {
            return None;
        }
        let mut bytes = [0u8; MAX_PATH + 1];
        bytes[..path.len()].copy_from_slice(path);
        Some(Self {
            bytes,
            len: path.len(),
        })
    }

    fn open(&self, mode: usize) -> Option<usize> {
        let block = [self.bytes.as_ptr() as usize, mode, self.len];
        // SAFETY: the block points at a live NUL-terminated buffer of `len` bytes.
        let handle = unsafe { syscall(nr::OPEN, &block) };
        (handle as isize >= 0).then_some(handle)
    }
}

fn close(handle: usize) {
    // SAFETY: the handle came from SYS_OPEN and is closed once.
    unsafe { syscall(nr::CLOSE, &[handle]) };
}

/// Reads the stored record into `record`; the number of bytes read, or `None` if there is no
/// stored record (no file: an erased page).
pub fn load(path: &StorePath, record: &mut [u8; SEED_RECORD_BYTES + 1]) -> Option<usize> {
    let handle = path.open(nr::open::R_BINARY)?;
    // One byte more than a record, to tell a longer (damaged) file from a whole record.
    let block = [handle, record.as_mut_ptr() as usize, record.len()];
    // SAFETY: the block describes a live buffer of the stated length.
    let not_read = unsafe { syscall(nr::READ, &block) };
    close(handle);
    Some(record.len().saturating_sub(not_read))
}

/// Writes `record` in place of the stored one; false if the store cannot be written.
pub fn store(path: &StorePath, record: &[u8; SEED_RECORD_BYTES]) -> bool {
    let Some(handle) = path.open(nr::open::W_TRUNC_BINARY) else {
        return false;
    };
    let block = [handle, record.as_ptr() as usize, record.len()];
    // SAFETY: the block describes a live buffer of the stated length.
    let not_written = unsafe { syscall(nr::WRITE, &block) };
    close(handle);
    not_written == 0
}
