//! The host client's key file: one 32-byte master seed from which the secret and public keys
//! are derived, so the same file always gives the same key id and a server that stored the
//! client's evaluation keys recognises it.
//!
//! The file is text (`hefun key file v1`, the preset, the seed in hex), created with mode 0600
//! through a temporary file and a hard link, so an interrupted write never leaves half a key and
//! two first runs at once agree on one file. A file that its group or other users may read is
//! refused: the seed is the secret key. (The ChaCha generators the keys are derived with do not
//! zeroize their state; the seed and the file's text do.)

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::format;
use std::string::String;

use zeroize::Zeroizing;

use crate::client::KeySeed;
use crate::keys::SecretKey;
use crate::ring::Context;
use crate::sampling::Seed;

const MAGIC: &str = "hefun key file v1";

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Others may read the file.
    #[error(
        "key file {path} has mode {mode:03o}: others may read the secret key; run `chmod 600 {path}` if it is yours"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not a key file, or for another preset.
    #[error("key file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key generation failed.
    #[error("deriving keys: {0}")]
    Keys(#[from] crate::Error),
}

/// The client's keys and where they came from.
pub struct ClientKeys {
    /// Secret key.
    pub sk: SecretKey,
    /// The seed it derives from (the public key, and so the key id, derive from it too).
    pub seed: KeySeed,
    /// True if the file was created by this call.
    pub created: bool,
}

/// Where `hefun infer` keeps its keys unless told otherwise:
/// `$XDG_CONFIG_HOME/hefun/<preset>.key`, else `$HOME/.config/hefun/<preset>.key`.
pub fn default_key_path(preset: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("hefun").join(format!("{preset}.key")))
}

/// Loads the keys in `path`, or creates the file with `fresh` (32 bytes from the OS's entropy)
/// if there is none.
pub fn load_or_create(
    path: &Path,
    ctx: &Context,
    fresh: Zeroizing<Seed>,
) -> Result<ClientKeys, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (seed, created) = match std::fs::File::open(path) {
        // Mode checked on the handle that is read, not on the path.
        Ok(mut file) => {
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Exposed {
                    path: path.to_path_buf(),
                    mode,
                });
            }
            let mut text = Zeroizing::new(String::with_capacity(256));
            (&mut file)
                .take(4096)
                .read_to_string(&mut text)
                .map_err(io)?;
            (parse(path, &text, ctx.params().name())?, false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if write_new(path, &fresh, ctx.params().name()).map_err(io)? {
                (fresh, true)
            } else {
                // Another process created it first: use theirs.
                return load_or_create(path, ctx, fresh);
            }
        }
        Err(e) => return Err(io(e)),
    };
    let seed = KeySeed::new(seed);
    let sk = SecretKey::generate(ctx, &mut seed.secret_key_rng())?;
    Ok(ClientKeys { sk, seed, created })
}

fn parse(path: &Path, text: &str, preset: &str) -> Result<Zeroizing<Seed>, KeyFileError> {
    let invalid = |reason: String| KeyFileError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(invalid(format!(
            "not a hefun key file (first line must be `{MAGIC}`)"
        )));
    }
    let file_preset = lines
        .next()
        .and_then(|l| l.strip_prefix("preset "))
        .ok_or_else(|| invalid("missing `preset` line".into()))?;
    if file_preset != preset {
        return Err(invalid(format!(
            "keys are for preset {file_preset}, the server uses {preset}"
        )));
    }
    let hex = lines
        .next()
        .and_then(|l| l.strip_prefix("seed "))
        .ok_or_else(|| invalid("missing `seed` line".into()))?;
    let mut seed = Zeroizing::new(Seed::default());
    if hex.len() != 2 * seed.len() || !hex.is_ascii() {
        return Err(invalid("the seed must be 64 hex digits".into()));
    }
    for (byte, pair) in seed.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let digits = std::str::from_utf8(pair).unwrap_or("zz");
        *byte = u8::from_str_radix(digits, 16)
            .map_err(|_| invalid("the seed must be 64 hex digits".into()))?;
    }
    Ok(seed)
}

/// Writes a new key file; false if one appeared meanwhile (it is left alone).
fn write_new(path: &Path, seed: &Seed, preset: &str) -> std::io::Result<bool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Sized up front so no reallocation leaves seed digits behind in freed memory.
    let mut text = Zeroizing::new(String::with_capacity(128));
    text.push_str(MAGIC);
    text.push_str("\npreset ");
    text.push_str(preset);
    text.push_str("\nseed ");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in seed {
        text.push(char::from(HEX[usize::from(b >> 4)]));
        text.push(char::from(HEX[usize::from(b & 15)]));
    }
    text.push('\n');
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    // A hard link never replaces an existing file, unlike a rename.
    let linked = f
        .write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}
