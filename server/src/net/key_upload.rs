//! Receiving a client's keys frame by frame.
//!
//! The client streams its public key limb by limb, then each switching key the server asked
//! for: `KeyBegin`, then its chunks in (digit, limb) order, then `KeysDone` with its key id.
//! Anything else — a limb out of order, a duplicate, a key nobody asked for, a key started before
//! the previous one is complete, residues not below their primes, a key id that is not the hash
//! of the public key — is a [`KeyUploadError`], which the session answers with error code
//! `BadKey` before closing. Memory is bounded by the keys that were asked for.

use client_core::keys::{KeyChunk, KeyKind, PublicKey, SwitchingKey};
use client_core::ring::{Context, Ntt, Poly};
use client_core::sampling::Seed;
use client_core::wire::messages::{ClientFrame, KeyId, Limb};

use crate::eval::EvalKeys;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyUploadError {
    /// A frame arrived out of order or twice.
    #[error("key upload out of order: {0}")]
    Order(&'static str),
    /// A key that was not asked for.
    #[error("key {0:?} was not requested or was already sent")]
    Unrequested(KeyKind),
    /// The upload ended with keys missing.
    #[error("{0} requested key(s) missing")]
    Missing(usize),
    /// The key id is not the hash of the public key.
    #[error("key id does not match the public key")]
    KeyId,
    /// Malformed key material (shape or residues).
    #[error("bad key material: {0}")]
    Material(#[from] client_core::Error),
    /// The evaluator refused a key.
    #[error("key rejected: {0}")]
    Rejected(String),
    /// A frame that has no place in a key upload.
    #[error("expected key upload frames")]
    NotKeyFrame,
}

/// The switching key being received.
struct Current {
    kind: KeyKind,
    seed: Seed,
    chunks: Vec<KeyChunk>,
    /// The next (digit, limb) expected.
    next: (u16, u16),
}

/// The server's side of a key upload.
pub struct KeyUpload<'a> {
    ctx: &'a Context,
    /// Keys still expected.
    pending: Vec<KeyKind>,
    public_seed: Option<Seed>,
    public_limbs: Vec<Vec<u64>>,
    public: Option<PublicKey>,
    current: Option<Current>,
    keys: EvalKeys,
    digits: u16,
    limbs: u16,
}

impl<'a> KeyUpload<'a> {
    /// Expects the public key and exactly the switching keys `requested`.
    pub fn new(ctx: &'a Context, requested: Vec<KeyKind>) -> Self {
        let params = ctx.params();
        Self {
            ctx,
            pending: requested,
            public_seed: None,
            public_limbs: Vec::new(),
            public: None,
            current: None,
            keys: EvalKeys::default(),
            digits: params.digit_count(params.top_level()) as u16,
            limbs: ctx.full_basis().len() as u16,
        }
    }

    /// Dispatches one frame of the upload; returns the key id the client claims once it sends
    /// `KeysDone` (then call [`KeyUpload::finish`]).
    pub fn on_frame(&mut self, frame: ClientFrame) -> Result<Option<KeyId>, KeyUploadError> {
        match frame {
            ClientFrame::PublicKeyLimb { seed, limb } => self.public_limb(seed, &limb)?,
            ClientFrame::KeyBegin { kind, seed } => self.key_begin(kind, seed)?,
            ClientFrame::KeyChunk(chunk) => self.chunk(chunk)?,
            ClientFrame::KeysDone { key_id } => return Ok(Some(key_id)),
            _ => return Err(KeyUploadError::NotKeyFrame),
        }
        Ok(None)
    }

    /// One limb of the public key's `b`, in order.
    pub fn public_limb(&mut self, seed: Seed, limb: &Limb) -> Result<(), KeyUploadError> {
        if self.public.is_some() {
            return Err(KeyUploadError::Order("public key sent twice"));
        }
        if *self.public_seed.get_or_insert(seed) != seed {
            return Err(KeyUploadError::Order("public key seed changed"));
        }
        if limb.index as usize != self.public_limbs.len() {
            return Err(KeyUploadError::Order("public key limb out of order"));
        }
        let n = self.ctx.n();
        if limb.words.len() != n {
            return Err(client_core::Error::LengthMismatch {
                expected: n,
                found: limb.words.len(),
            }
            .into());
        }
        self.public_limbs.push(limb.words.clone());
        let basis = self.ctx.top_basis();
        if self.public_limbs.len() == basis.len() {
            let data: Vec<u64> = self.public_limbs.drain(..).flatten().collect();
            let b = Poly::<Ntt>::from_data(self.ctx, basis, data)?;
            let pk = PublicKey::from_parts(self.ctx, seed, b)?;
            self.keys
                .set_public(self.ctx, &pk)
                .map_err(|e| KeyUploadError::Rejected(e.to_string()))?;
            self.public = Some(pk);
        }
        Ok(())
    }

    /// Starts a switching key.
    pub fn key_begin(&mut self, kind: KeyKind, seed: Seed) -> Result<(), KeyUploadError> {
        if self.public.is_none() {
            return Err(KeyUploadError::Order("switching key before the public key"));
        }
        if self.current.is_some() {
            return Err(KeyUploadError::Order(
                "key started before the previous one was complete",
            ));
        }
        let pos = self
            .pending
            .iter()
            .position(|&k| k == kind)
            .ok_or(KeyUploadError::Unrequested(kind))?;
        self.pending.swap_remove(pos);
        self.current = Some(Current {
            kind,
            seed,
            chunks: Vec::with_capacity(usize::from(self.digits) * usize::from(self.limbs)),
            next: (0, 0),
        });
        Ok(())
    }

    /// The next chunk of the current key.
    pub fn chunk(&mut self, chunk: KeyChunk) -> Result<(), KeyUploadError> {
        let (limbs, digits) = (self.limbs, self.digits);
        let cur = self
            .current
            .as_mut()
            .ok_or(KeyUploadError::Order("key chunk outside a key"))?;
        if (chunk.digit, chunk.limb) != cur.next {
            return Err(KeyUploadError::Order(
                "key chunk missing, duplicated or out of order",
            ));
        }
        if chunk.data.len() != self.ctx.n() {
            return Err(client_core::Error::LengthMismatch {
                expected: self.ctx.n(),
                found: chunk.data.len(),
            }
            .into());
        }
        cur.next = if chunk.limb + 1 < limbs {
            (chunk.digit, chunk.limb + 1)
        } else {
            (chunk.digit + 1, 0)
        };
        cur.chunks.push(chunk);
        if cur.next.0 == digits {
            let done = self.current.take().ok_or(KeyUploadError::Order("no key"))?;
            let key = SwitchingKey::from_chunks(self.ctx, done.kind, done.seed, done.chunks)?;
            self.keys
                .add_switching(self.ctx, &key)
                .map_err(|e| KeyUploadError::Rejected(e.to_string()))?;
        }
        Ok(())
    }

    /// Ends the upload: every requested key complete and `key_id` the public key's hash.
    pub fn finish(self, key_id: &KeyId) -> Result<EvalKeys, KeyUploadError> {
        let pk = self
            .public
            .as_ref()
            .ok_or(KeyUploadError::Order("no public key"))?;
        let missing = self.pending.len() + usize::from(self.current.is_some());
        if missing > 0 {
            return Err(KeyUploadError::Missing(missing));
        }
        if pk.key_id(self.ctx) != *key_id {
            return Err(KeyUploadError::KeyId);
        }
        Ok(self.keys)
    }
}
