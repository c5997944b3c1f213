//! Limb data on the wire: a byte string of little-endian u64 words.
//!
//! Residues are uniformly distributed, so postcard's varints would cost 9 bytes for a 50-bit
//! word; fixed 8-byte words are smaller and let a decoder reject bad lengths up front.

use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(data: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    // On little-endian targets (x86, ARM) the words already are their wire bytes: no copy, so
    // a microcontroller does not hold a limb twice while sending it.
    #[cfg(target_endian = "little")]
    {
        serializer.serialize_bytes(bytemuck::cast_slice(data))
    }
    #[cfg(not(target_endian = "little"))]
    {
        let mut bytes = Vec::with_capacity(data.len() * 8);
        for word in data {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        serializer.serialize_bytes(&bytes)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    deserializer.deserialize_bytes(WordsVisitor)
}

struct WordsVisitor;

fn words_from_bytes<E: de::Error>(bytes: &[u8]) -> Result<Vec<u64>, E> {
    if !bytes.len().is_multiple_of(8) {
        return Err(E::custom("limb data is not a whole number of 64-bit words"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect())
}

impl<'de> Visitor<'de> for WordsVisitor {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string of little-endian u64 words")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        words_from_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        words_from_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        words_from_bytes(&v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Self-describing formats (JSON) hand bytes over as a sequence of numbers.
        let mut bytes = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        words_from_bytes(&bytes)
    }
}
