//! Arguments from the host: the entropy seed, how many of the stored images to classify, and
//! where the key seed is kept across reboots.
//!
//! Under QEMU they come from the semihosting command line
//! (`-semihosting-config …,arg=firmware,arg=seed=<64 hex digits>,arg=images=<n>,arg=keys=<path>`),
//! read with the
//! SYS_GET_CMDLINE call. The seed is 32 bytes from the host's /dev/urandom. On hardware this is
//! where the true random number generator goes (for example the STM32F4's RNG peripheral, after
//! its health checks): the firmware has no other source of secrets, and a repeated seed repeats
//! the secret key and the encryption randomness.

use cortex_m_semihosting::{nr, syscall};

use crate::key_storage::StorePath;

/// What the host passed.
pub struct HostArgs {
    /// The seed of the firmware's ChaCha20 generator.
    pub seed: [u8; 32],
    /// Images to classify (all stored ones if absent).
    pub images: Option<usize>,
    /// Where the key seed record lives (a new key seed at every boot if absent).
    pub keys: Option<StorePath>,
}

/// Reads the arguments, or `None` if there is no valid `seed=` word or a word is malformed.
pub fn read() -> Option<HostArgs> {
    let mut line = [0u8; 512];
    // SYS_GET_CMDLINE takes a pointer to [buffer address, buffer length] and writes the length
    // used back into the second word.
    let mut block = [line.as_mut_ptr() as usize, line.len()];
    // SAFETY: the block describes a live buffer of the stated length.
    let status = unsafe { syscall(nr::GET_CMDLINE, &mut block) };
    let args = if status == 0 {
        parse(&line[..block[1].min(line.len())])
    } else {
        None
    };
    line.fill(0);
    args
}

fn parse(line: &[u8]) -> Option<HostArgs> {
    let text = core::str::from_utf8(line).ok()?;
    let mut seed = None;
    let mut images = None;
    let mut keys = None;
    for word in text.split_whitespace() {
        if let Some(hex) = word.strip_prefix("seed=") {
            seed = Some(parse_seed(hex.as_bytes())?);
        } else if let Some(n) = word.strip_prefix("images=") {
            images = Some(n.parse().ok()?);
        } else if let Some(path) = word.strip_prefix("keys=") {
            keys = Some(StorePath::new(path.as_bytes())?);
        }
    }
    Some(HostArgs {
        seed: seed?,
        images,
        keys,
    })
}

fn parse_seed(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (byte, pair) in seed.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(seed)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}
