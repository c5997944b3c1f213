//! The key seed as a device stores it across reboots: one 64-byte record for a flash page (or
//! any other small persistent store), so a rebooted device derives the same keys, names them in
//! its hello, and skips the upload.
//!
//! ```text
//! magic "hefunKS1" (8) ‖ preset tag (8) ‖ seed (32) ‖ check (16)
//! ```
//!
//! The preset tag (the first 8 bytes of SHA-256 of the preset's name) ties the seed to one
//! parameter set: secret keys of two rings drawn from the same stream would share coefficients,
//! so a firmware that changes its preset makes a new seed instead of reusing the old one. The
//! check (the first 16 bytes of SHA-256 over the rest) tells a damaged record from a good one; a
//! record that is all 0xFF or all 0x00 is an erased page. Keeping the seed secret at rest (read
//! protection, a secure element, encrypted flash) is the platform's job: the record is the
//! secret key.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::KeySeed;
use crate::sampling::Seed;

/// Bytes of a stored seed record.
pub const SEED_RECORD_BYTES: usize = 64;

const MAGIC: &[u8; 8] = b"hefunKS1";

/// Why a stored record gives no seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SeedRecordError {
    /// The store is erased (or was never written): the device has no keys yet.
    Empty,
    /// Not a whole record, or its check does not match: the store was damaged or half written.
    Damaged,
    /// A good record for another preset.
    OtherPreset,
}

impl core::fmt::Display for SeedRecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Empty => "no key seed is stored",
            Self::Damaged => "the stored key seed is damaged (its check does not match)",
            Self::OtherPreset => "the stored key seed belongs to another preset",
        })
    }
}

fn preset_tag(preset: &str) -> [u8; 8] {
    let digest = Sha256::digest(preset.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    tag
}

fn check(body: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(body);
    let mut c = [0u8; 16];
    c.copy_from_slice(&digest[..16]);
    c
}

impl KeySeed {
    /// The record to store for this seed under `preset` (the name of the parameter set).
    pub fn to_record(&self, preset: &str) -> Zeroizing<[u8; SEED_RECORD_BYTES]> {
        let mut record = Zeroizing::new([0u8; SEED_RECORD_BYTES]);
        record[..8].copy_from_slice(MAGIC);
        record[8..16].copy_from_slice(&preset_tag(preset));
        record[16..48].copy_from_slice(self.seed());
        let c = check(&record[..48]);
        record[48..].copy_from_slice(&c);
        record
    }

    /// The seed in a stored record, if it is whole and for `preset`.
    pub fn from_record(record: &[u8], preset: &str) -> Result<Self, SeedRecordError> {
        if record.is_empty() || record.iter().all(|&b| b == 0xFF) || record.iter().all(|&b| b == 0)
        {
            return Err(SeedRecordError::Empty);
        }
        if record.len() != SEED_RECORD_BYTES
            || &record[..8] != MAGIC
            || record[48..] != check(&record[..48])
        {
            return Err(SeedRecordError::Damaged);
        }
        if record[8..16] != preset_tag(preset) {
            return Err(SeedRecordError::OtherPreset);
        }
        let mut seed = Zeroizing::new(Seed::default());
        seed.copy_from_slice(&record[16..48]);
        Ok(Self::new(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(byte: u8) -> KeySeed {
        KeySeed::new(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn a_record_gives_back_its_seed_and_keys() {
        let s = seed(7);
        let record = s.to_record("hefun-n8192");
        let back = KeySeed::from_record(&record[..], "hefun-n8192").expect("good record");
        assert_eq!(back.seed(), s.seed());
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let record = seed(0x5a).to_record("hefun-n8192");
        for i in 0..SEED_RECORD_BYTES {
            let mut bad = *record;
            bad[i] ^= 0x10;
            assert_eq!(
                KeySeed::from_record(&bad, "hefun-n8192").err(),
                Some(SeedRecordError::Damaged),
                "byte {i}"
            );
        }
        for len in [1, 32, 48, 63, 65] {
            let mut short = [0x11u8; 65];
            short[..len.min(64)].copy_from_slice(&record[..len.min(64)]);
            assert_eq!(
                KeySeed::from_record(&short[..len], "hefun-n8192").err(),
                Some(SeedRecordError::Damaged),
                "length {len}"
            );
        }
    }

    #[test]
    fn erased_stores_and_other_presets_are_told_apart() {
        for erased in [[0xFFu8; SEED_RECORD_BYTES], [0u8; SEED_RECORD_BYTES]] {
            assert_eq!(
                KeySeed::from_record(&erased, "hefun-n8192").err(),
                Some(SeedRecordError::Empty)
            );
        }
        assert_eq!(
            KeySeed::from_record(&[], "hefun-n8192").err(),
            Some(SeedRecordError::Empty)
        );
        let record = seed(3).to_record("hefun-n16384");
        assert_eq!(
            KeySeed::from_record(&record[..], "hefun-n8192").err(),
            Some(SeedRecordError::OtherPreset)
        );
    }
}
