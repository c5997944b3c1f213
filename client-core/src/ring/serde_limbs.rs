//! Limb data on the wire, bit-packed: the word count, the bit width w of the largest word, then
//! the words w bits each, least significant first, in ⌈count·w/8⌉ bytes.
//!
//! Residues modulo a b-bit prime are uniform below it, so w is b for any real limb: 50-bit
//! residues take 50 bits instead of a 64-bit word (22 % fewer bytes; 31 % at 44 bits). Without
//! `std` (the device) the bytes are produced one at a time into the serializer, so a sender never
//! holds a packed copy of a limb; hosts pack into one buffer first, which is faster. postcard
//! writes a sequence of bytes exactly as a byte string, so both give the same frames. Receivers
//! read it as a sequence and unpack each byte as it comes (on a device, straight off the
//! stream: no copy of the packed limb is ever held).

use alloc::vec::Vec;
use core::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserializer, Serialize, Serializer};

/// Most words one limb may claim (N ≤ 2^15 for every supported ring, with room to spare):
/// bounds what a hostile frame can make a receiver allocate.
pub const MAX_WORDS: usize = 1 << 16;

/// Bytes of `count` words packed at `bits` bits.
pub(crate) fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

/// Writes `data` packed (for `#[serde(with = "client_core::ring::serde_limbs")]`).
pub fn serialize<S: Serializer>(data: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
    let bits = 64 - data.iter().fold(0u64, |m, &w| m | w).leading_zeros();
    let count = u32::try_from(data.len())
        .map_err(|_| serde::ser::Error::custom("limb too long for the wire"))?;
    let mut t = serializer.serialize_tuple(3)?;
    t.serialize_element(&count)?;
    t.serialize_element(&(bits as u8))?;
    t.serialize_element(&Packed { data, bits })?;
    t.end()
}

/// The packed bytes of a limb, serialized as a byte sequence.
struct Packed<'a> {
    data: &'a [u64],
    bits: u32,
}

impl Packed<'_> {
    /// Hands the packed bytes to `emit`, in order.
    fn pack<E>(&self, mut emit: impl FnMut(u8) -> Result<(), E>) -> Result<(), E> {
        // Up to 7 pending bits plus one 64-bit word.
        let (mut acc, mut pending) = (0u128, 0u32);
        for &w in self.data {
            acc |= u128::from(w) << pending;
            pending += self.bits;
            while pending >= 8 {
                emit(acc as u8)?;
                acc >>= 8;
                pending -= 8;
            }
        }
        if pending > 0 {
            emit(acc as u8)?;
        }
        Ok(())
    }
}

impl Serialize for Packed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = packed_len(self.data.len(), self.bits);
        if cfg!(feature = "std") {
            // Hosts pack into one buffer: a byte string is written in one call, several times
            // faster than a byte at a time, and postcard writes both forms identically.
            let mut bytes = Vec::with_capacity(len);
            self.pack(|b| {
                bytes.push(b);
                Ok::<(), S::Error>(())
            })?;
            return serializer.serialize_bytes(&bytes);
        }
        let mut seq = serializer.serialize_seq(Some(len))?;
        self.pack(|b| seq.serialize_element(&b))?;
        seq.end()
    }
}

/// Unpacks `count` words of `bits` bits (≤ 64) from `packed_len(count, bits)` bytes pulled
/// from `fill` in chunks (it fills a buffer and says how many bytes it put there, 0 at the
/// end): the bulk path of a device's streamed limb frames. Refuses short data and set padding.
pub(crate) fn unpack_chunks(
    count: usize,
    bits: u32,
    mut fill: impl FnMut(&mut [u8]) -> Option<usize>,
) -> Option<Vec<u64>> {
    if count > MAX_WORDS || bits > 64 {
        return None;
    }
    let mut left = packed_len(count, bits);
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut words = Vec::with_capacity(count);
    let mut chunk = [0u8; 64];
    // Up to 7 pending bits plus one byte fit a u64 accumulator when bits ≤ 56; wider words
    // need a u128 one.
    let (mut acc, mut have) = (0u128, 0u32);
    let (mut acc64, wide) = (0u64, bits > 56);
    while left > 0 {
        let want = left.min(chunk.len());
        let got = fill(&mut chunk[..want])?;
        if got == 0 || got > want {
            return None;
        }
        left -= got;
        for &b in &chunk[..got] {
            if wide {
                acc |= u128::from(b) << have;
            } else {
                acc64 |= u64::from(b) << have;
            }
            have += 8;
            while bits > 0 && have >= bits && words.len() < count {
                if wide {
                    words.push(acc as u64 & mask);
                    acc >>= bits;
                } else {
                    words.push(acc64 & mask);
                    acc64 = if bits == 64 { 0 } else { acc64 >> bits };
                }
                have -= bits;
            }
        }
    }
    if acc != 0 || acc64 != 0 {
        return None;
    }
    words.resize(count, 0);
    Some(words)
}

/// Reads packed limb data, refusing lengths, widths or padding that do not match.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    deserializer.deserialize_tuple(3, LimbVisitor)
}

struct LimbVisitor;

impl<'de> Visitor<'de> for LimbVisitor {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a limb: word count, bit width, packed bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let missing = || de::Error::custom("limb header incomplete");
        let count: u32 = seq.next_element()?.ok_or_else(missing)?;
        let bits: u8 = seq.next_element()?.ok_or_else(missing)?;
        let count = count as usize;
        if count > MAX_WORDS {
            return Err(de::Error::custom("limb longer than any supported ring"));
        }
        if bits > 64 {
            return Err(de::Error::custom("limb words wider than 64 bits"));
        }
        seq.next_element_seed(Unpack {
            count,
            bits: u32::from(bits),
        })?
        .ok_or_else(missing)
    }
}

/// Unpacks the byte string of a limb whose header said `count` words of `bits` bits.
struct Unpack {
    count: usize,
    bits: u32,
}

impl Unpack {
    fn unpack<E: de::Error>(&self, bytes: &[u8]) -> Result<Vec<u64>, E> {
        if bytes.len() != packed_len(self.count, self.bits) {
            return Err(E::custom(
                "limb bytes do not match its word count and width",
            ));
        }
        let mask = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let mut words = Vec::with_capacity(self.count);
        let (mut acc, mut have) = (0u128, 0u32);
        let mut next = bytes.iter();
        for _ in 0..self.count {
            while have < self.bits {
                let b = next.next().copied().unwrap_or(0);
                acc |= u128::from(b) << have;
                have += 8;
            }
            words.push(acc as u64 & mask);
            acc >>= self.bits;
            have -= self.bits;
        }
        // One encoding per limb: the padding of the last byte is zero.
        if acc != 0 {
            return Err(E::custom("limb padding bits are not zero"));
        }
        Ok(words)
    }
}

impl<'de> DeserializeSeed<'de> for Unpack {
    type Value = Vec<u64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<u64>, D::Error> {
        // As a sequence: postcard then hands the bytes over one at a time from a buffer or,
        // on a device, straight off the stream, with no copy of the packed limb either way.
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Unpack {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the packed bytes of a limb")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        self.unpack(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
        self.unpack(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // A streamed postcard frame (a device), or a self-describing format (JSON), hands the
        // bytes over one at a time: each is unpacked as it comes, against the header's bounds.
        let len = packed_len(self.count, self.bits);
        let mask = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        let mut words = Vec::with_capacity(self.count);
        let (mut acc, mut have, mut read) = (0u128, 0u32, 0usize);
        while let Some(b) = seq.next_element::<u8>()? {
            if read == len {
                return Err(de::Error::custom("limb bytes exceed its word count"));
            }
            read += 1;
            acc |= u128::from(b) << have;
            have += 8;
            while self.bits > 0 && have >= self.bits && words.len() < self.count {
                words.push(acc as u64 & mask);
                acc >>= self.bits;
                have -= self.bits;
            }
        }
        if read != len {
            return Err(de::Error::custom(
                "limb bytes do not match its word count and width",
            ));
        }
        if acc != 0 {
            return Err(de::Error::custom("limb padding bits are not zero"));
        }
        words.resize(self.count, 0);
        Ok(words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct L(#[serde(with = "super")] Vec<u64>);

    fn round_trip(words: Vec<u64>) -> usize {
        let bytes = postcard::to_allocvec(&L(words.clone())).unwrap();
        assert_eq!(postcard::from_bytes::<L>(&bytes).unwrap(), L(words));
        bytes.len()
    }

    #[test]
    fn limbs_pack_to_their_width_and_back() {
        // 1000 words of 50 bits: 6250 bytes plus a 4-byte header (varint 1000, width, varint
        // length).
        let words: Vec<u64> = (0..1000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & ((1 << 50) - 1) | (1 << 49))
            .collect();
        assert_eq!(round_trip(words), 6250 + 2 + 1 + 2);
        for bits in [1u32, 7, 8, 13, 31, 32, 44, 63, 64] {
            let top = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let words: Vec<u64> = (0..37u64).map(|i| top - i.min(top)).collect();
            round_trip(words);
        }
        round_trip(vec![]);
        round_trip(vec![0; 5]);
    }

    /// The sequence path (a device's streamed read) against the byte-string path.
    fn via_seq(bytes: &[u8]) -> Option<Vec<u64>> {
        struct AsSeq;
        impl<'de> DeserializeSeed<'de> for AsSeq {
            type Value = Vec<u64>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u64>, D::Error> {
                d.deserialize_tuple(3, SeqLimb)
            }
        }
        struct SeqLimb;
        impl<'de> Visitor<'de> for SeqLimb {
            type Value = Vec<u64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a limb")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
                let count: u32 = seq.next_element()?.unwrap_or(0);
                let bits: u8 = seq.next_element()?.unwrap_or(0);
                struct Inner(Unpack);
                impl<'de> DeserializeSeed<'de> for Inner {
                    type Value = Vec<u64>;
                    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u64>, D::Error> {
                        d.deserialize_seq(self.0)
                    }
                }
                let unpack = Unpack {
                    count: count as usize,
                    bits: u32::from(bits),
                };
                seq.next_element_seed(Inner(unpack))?
                    .ok_or_else(|| de::Error::custom("missing"))
            }
        }
        let mut d = postcard::Deserializer::from_bytes(bytes);
        AsSeq.deserialize(&mut d).ok()
    }

    #[test]
    fn streamed_unpacking_matches_the_byte_string() {
        for bits in [0u32, 1, 7, 8, 13, 43, 63, 64] {
            let top = if bits == 64 {
                u64::MAX
            } else {
                (1u64 << bits).wrapping_sub(1)
            };
            let words: Vec<u64> = (0..41u64).map(|i| top.wrapping_sub(i * 3) & top).collect();
            let bytes = postcard::to_allocvec(&L(words.clone())).unwrap();
            assert_eq!(via_seq(&bytes), Some(words), "{bits} bits");
        }
        assert_eq!(
            via_seq(&[3, 3, 2, 0b1110_1011, 0b0000_0001]),
            Some(vec![3, 5, 7])
        );
        assert_eq!(via_seq(&[3, 3, 2, 0xeb, 0x81]), None); // padding bits set
        assert_eq!(via_seq(&[3, 3, 1, 0xeb]), None); // short
        assert_eq!(via_seq(&[3, 3, 3, 0xeb, 1, 0]), None); // long
    }

    #[test]
    fn hostile_limbs_are_errors() {
        let good = postcard::to_allocvec(&L(vec![3, 5, 7])).unwrap();
        // [count 3, width 3, length 2, then 3 = 011, 5 = 101, 7 = 111 from the low bit up]
        assert_eq!(good, [3, 3, 2, 0b1110_1011, 0b0000_0001]);
        let bad = |bytes: &[u8]| postcard::from_bytes::<L>(bytes).is_err();
        assert!(!bad(&good));
        assert!(bad(&[3, 3, 3, 0xeb, 1, 0])); // bytes longer than count·width
        assert!(bad(&[3, 3, 1, 0xeb])); // shorter
        assert!(bad(&[3, 3, 2, 0xeb, 0x81])); // padding bits set
        assert!(bad(&[3, 65, 2, 0xeb, 1])); // wider than 64 bits
        assert!(bad(&[0x80, 0x80, 0x10, 1, 0])); // 2^18 words
    }
}
