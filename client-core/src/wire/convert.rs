//! Whole protocol messages ([`super::assembled`]) to frames and back.
//!
//! A message's ciphertexts go out as a `CiphertextsBegin` frame and then one frame per limb, in
//! (ciphertext, component, limb) order. The assemblers accept exactly that order and check every
//! limb against the context (length, residues below their primes) as it arrives, so a peer can
//! neither skip, repeat nor reorder limbs, nor make the receiver buffer more than one message.

use alloc::vec::Vec;

use super::assembled::{ClientMessage, OutputMessage, RoundReply, RoundRequest, ServerMessage};
use super::messages::{ClientFrame, Limb, Purpose, ServerFrame, MAX_CIPHERTEXTS};
use crate::cipher::{Ciphertext, SeededCiphertext};
use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::ring::{Basis, Context, Ntt, Poly};
use crate::sampling::Seed;

fn limbs_of(poly: &Poly<Ntt>, n: usize) -> impl Iterator<Item = Limb> + '_ {
    poly.data().chunks(n).enumerate().map(|(i, w)| Limb {
        index: i as u16,
        words: w.to_vec(),
    })
}

/// The order in which the two components of one limb of a full ciphertext travel: limb by limb,
/// c1 before c0. A receiver multiplies c1 by its secret and drops the secret's limb before c0
/// arrives, so a device never holds more than two limbs of one ciphertext besides what it has
/// decrypted.
pub const ARRIVAL_ORDER: [u8; 2] = [1, 0];

fn count(len: usize) -> Result<u16> {
    u16::try_from(len)
        .ok()
        .filter(|&c| (1..=MAX_CIPHERTEXTS).contains(&c))
        .ok_or(Error::Decode("bad number of ciphertexts in a message"))
}

fn seeded_frames(
    purpose: Purpose,
    cts: &[SeededCiphertext],
    n: usize,
    out: &mut Vec<ClientFrame>,
) -> Result<()> {
    out.push(ClientFrame::CiphertextsBegin {
        purpose,
        count: count(cts.len())?,
    });
    for (i, ct) in cts.iter().enumerate() {
        let limbs = ct.c0.basis().len() as u16;
        out.extend(limbs_of(&ct.c0, n).map(|limb| ClientFrame::SeededLimb {
            ct: i as u16,
            seed: ct.seed,
            scale: ct.scale,
            limbs,
            limb,
        }));
    }
    Ok(())
}

/// The public key as `PublicKeyLimb` frames, one per limb of `b`.
pub fn public_key_frames(pk: &PublicKey, n: usize) -> Vec<ClientFrame> {
    limbs_of(pk.b(), n)
        .map(|limb| ClientFrame::PublicKeyLimb {
            seed: *pk.seed(),
            limb,
        })
        .collect()
}

/// The frames of a client message (input or round reply).
pub fn client_frames(msg: &ClientMessage, n: usize) -> Result<Vec<ClientFrame>> {
    let mut out = Vec::new();
    match msg {
        ClientMessage::Input(cts) => seeded_frames(Purpose::Input, cts, n, &mut out)?,
        ClientMessage::RoundReply(r) => {
            // The sign-magnitude round's reply has no signs group.
            if !r.signs.is_empty() {
                seeded_frames(Purpose::Signs(r.round), &r.signs, n, &mut out)?;
            }
            seeded_frames(Purpose::Refreshed(r.round), &r.refreshed, n, &mut out)?;
        }
    }
    Ok(out)
}

fn full_frames(
    purpose: Purpose,
    cts: &[Ciphertext],
    len: u32,
    sign_scale: f64,
    n: usize,
    out: &mut Vec<ServerFrame>,
) -> Result<()> {
    out.push(ServerFrame::CiphertextsBegin {
        purpose,
        count: count(cts.len())?,
        len,
        sign_scale,
    });
    for (i, ct) in cts.iter().enumerate() {
        let limbs = ct.c0.basis().len() as u16;
        let (c0, c1) = (ct.c0.data().chunks(n), ct.c1.data().chunks(n));
        for (index, (w0, w1)) in c0.zip(c1).enumerate() {
            for (component, words) in ARRIVAL_ORDER.into_iter().zip([w1, w0]) {
                out.push(ServerFrame::CiphertextLimb {
                    ct: i as u16,
                    component,
                    scale: ct.scale,
                    limbs,
                    limb: Limb {
                        index: index as u16,
                        words: words.to_vec(),
                    },
                });
            }
        }
    }
    Ok(())
}

/// The frames of a server message (round or output).
pub fn server_frames(msg: &ServerMessage, n: usize) -> Result<Vec<ServerFrame>> {
    let mut out = Vec::new();
    match msg {
        ServerMessage::Round(r) => {
            let (round, period, s) = (r.round, r.period, r.sign_scale);
            full_frames(Purpose::Relu(round), &r.relu, period, s, n, &mut out)?;
            // The sign-magnitude round sends no refresh messages.
            if !r.refresh.is_empty() {
                full_frames(Purpose::Refresh(round), &r.refresh, period, s, n, &mut out)?;
            }
        }
        ServerMessage::Output(o) => {
            full_frames(Purpose::Output, &o.output, o.len, 0.0, n, &mut out)?;
        }
    }
    Ok(out)
}

/// Collects the limbs of `count` ciphertexts of `components` polynomials each, in order: for
/// each ciphertext, limb by limb, the components in [`ARRIVAL_ORDER`] (one component: c0).
struct Group {
    purpose: Purpose,
    count: u16,
    components: u8,
    /// (ciphertext, limb, step in the arrival order) expected next.
    next: (u16, u16, u8),
    limbs: u16,
    scale: f64,
    seed: Seed,
    /// The current ciphertext's words, per component.
    data: [Vec<u64>; 2],
    done: Vec<(Vec<Poly<Ntt>>, f64, Seed)>,
}

impl Group {
    fn new(purpose: Purpose, count: u16, components: u8) -> Result<Self> {
        if !(1..=MAX_CIPHERTEXTS).contains(&count) {
            return Err(Error::Decode("bad number of ciphertexts in a message"));
        }
        Ok(Self {
            purpose,
            count,
            components,
            next: (0, 0, 0),
            limbs: 0,
            scale: 0.0,
            seed: [0; 32],
            data: [Vec::new(), Vec::new()],
            done: Vec::new(),
        })
    }

    /// The component expected at `step` of a limb.
    fn component(&self, step: u8) -> u8 {
        if self.components == 2 {
            ARRIVAL_ORDER[usize::from(step)]
        } else {
            0
        }
    }

    /// Adds a limb; true once every ciphertext is complete.
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ctx: &Context,
        ct: u16,
        component: u8,
        limbs: u16,
        scale: f64,
        seed: Seed,
        limb: Limb,
    ) -> Result<bool> {
        let (next_ct, next_limb, step) = self.next;
        if (ct, component, limb.index) != (next_ct, self.component(step), next_limb) {
            return Err(Error::Decode("limb missing, repeated or out of order"));
        }
        if next_limb == 0 && step == 0 {
            // First limb of a ciphertext: fixes its level, scale and seed.
            if limbs == 0 || usize::from(limbs) > ctx.top_basis().len() {
                return Err(Error::Decode("bad limb count"));
            }
            self.limbs = limbs;
            self.scale = scale;
            self.seed = seed;
        } else if limbs != self.limbs
            || scale.to_bits() != self.scale.to_bits()
            || seed != self.seed
        {
            return Err(Error::Decode("limbs of one ciphertext disagree"));
        }
        if limb.words.len() != ctx.n() {
            return Err(Error::LengthMismatch {
                expected: ctx.n(),
                found: limb.words.len(),
            });
        }
        self.data[usize::from(component)].extend_from_slice(&limb.words);
        self.next.2 += 1;
        if self.next.2 < self.components {
            return Ok(false);
        }
        self.next = (next_ct, next_limb + 1, 0);
        if self.next.1 == self.limbs {
            let basis = Basis::level(usize::from(self.limbs) - 1);
            let mut polys = Vec::with_capacity(usize::from(self.components));
            for data in self.data.iter_mut().take(usize::from(self.components)) {
                polys.push(Poly::from_data(ctx, basis, core::mem::take(data))?);
            }
            self.done.push((polys, self.scale, self.seed));
            self.next = (next_ct + 1, 0, 0);
        }
        Ok(self.next.0 == self.count)
    }
}

/// Rebuilds client messages from frames (the server side).
#[derive(Default)]
pub struct ClientMessageAssembler {
    group: Option<Group>,
    signs: Option<(u32, Vec<SeededCiphertext>)>,
}

fn seeded(done: Vec<(Vec<Poly<Ntt>>, f64, Seed)>) -> Vec<SeededCiphertext> {
    done.into_iter()
        .filter_map(|(mut polys, scale, seed)| {
            polys.pop().map(|c0| SeededCiphertext { c0, seed, scale })
        })
        .collect()
}

impl ClientMessageAssembler {
    /// True between messages (nothing half received).
    pub fn is_idle(&self) -> bool {
        self.group.is_none() && self.signs.is_none()
    }

    /// Feeds one frame (only `CiphertextsBegin` and `SeededLimb` belong here); returns the
    /// message once complete.
    pub fn push(&mut self, ctx: &Context, frame: ClientFrame) -> Result<Option<ClientMessage>> {
        match frame {
            ClientFrame::CiphertextsBegin { purpose, count } => {
                if self.group.is_some() {
                    return Err(Error::Decode("ciphertexts started inside another group"));
                }
                let expected = match (&self.signs, purpose) {
                    // A `Refreshed` group without signs is a sign-magnitude round's reply.
                    (None, Purpose::Input | Purpose::Signs(_) | Purpose::Refreshed(_)) => true,
                    (Some((r, _)), Purpose::Refreshed(n)) => *r == n,
                    _ => false,
                };
                if !expected {
                    return Err(Error::Decode("unexpected ciphertext group"));
                }
                self.group = Some(Group::new(purpose, count, 1)?);
                Ok(None)
            }
            ClientFrame::SeededLimb {
                ct,
                seed,
                scale,
                limbs,
                limb,
            } => {
                let group = self
                    .group
                    .as_mut()
                    .ok_or(Error::Decode("limb outside a ciphertext group"))?;
                if !group.push(ctx, ct, 0, limbs, scale, seed, limb)? {
                    return Ok(None);
                }
                let group = self.group.take().ok_or(Error::Decode("no group"))?;
                let cts = seeded(group.done);
                match group.purpose {
                    Purpose::Input => Ok(Some(ClientMessage::Input(cts))),
                    Purpose::Signs(round) => {
                        self.signs = Some((round, cts));
                        Ok(None)
                    }
                    Purpose::Refreshed(round) => {
                        let signs = self.signs.take().map(|(_, s)| s).unwrap_or_default();
                        Ok(Some(ClientMessage::RoundReply(RoundReply {
                            round,
                            signs,
                            refreshed: cts,
                        })))
                    }
                    _ => Err(Error::Decode("unexpected ciphertext group")),
                }
            }
            _ => Err(Error::Decode("not a ciphertext frame")),
        }
    }
}

/// Rebuilds server messages from frames (the client side, on hosts with room for a whole
/// message; a microcontroller consumes the limbs as they arrive instead).
#[derive(Default)]
pub struct ServerMessageAssembler {
    group: Option<(Group, u32, f64)>,
    relu: Option<(u32, u32, f64, Vec<Ciphertext>)>,
    /// Rounds are ReLU messages only (the sign-magnitude round).
    relu_only: bool,
}

impl ServerMessageAssembler {
    /// An assembler for a preset whose rounds go as `round` says.
    pub fn for_round(round: crate::params::RoundKind) -> Self {
        Self {
            relu_only: round == crate::params::RoundKind::SignMagnitude,
            ..Self::default()
        }
    }
}

fn full(done: Vec<(Vec<Poly<Ntt>>, f64, Seed)>) -> Vec<Ciphertext> {
    done.into_iter()
        .filter_map(|(mut polys, scale, _)| {
            let c1 = polys.pop()?;
            let c0 = polys.pop()?;
            Some(Ciphertext { c0, c1, scale })
        })
        .collect()
}

impl ServerMessageAssembler {
    /// Feeds one frame (only `CiphertextsBegin` and `CiphertextLimb` belong here); returns the
    /// message once complete.
    pub fn push(&mut self, ctx: &Context, frame: ServerFrame) -> Result<Option<ServerMessage>> {
        match frame {
            ServerFrame::CiphertextsBegin {
                purpose,
                count,
                len,
                sign_scale,
            } => {
                if self.group.is_some() {
                    return Err(Error::Decode("ciphertexts started inside another group"));
                }
                let expected = match (&self.relu, purpose) {
                    (None, Purpose::Relu(_) | Purpose::Output) => true,
                    (Some((r, ..)), Purpose::Refresh(n)) => *r == n,
                    _ => false,
                };
                if !expected {
                    return Err(Error::Decode("unexpected ciphertext group"));
                }
                self.group = Some((Group::new(purpose, count, 2)?, len, sign_scale));
                Ok(None)
            }
            ServerFrame::CiphertextLimb {
                ct,
                component,
                scale,
                limbs,
                limb,
            } => {
                let (group, ..) = self
                    .group
                    .as_mut()
                    .ok_or(Error::Decode("limb outside a ciphertext group"))?;
                if !group.push(ctx, ct, component, limbs, scale, [0; 32], limb)? {
                    return Ok(None);
                }
                let (group, len, sign_scale) =
                    self.group.take().ok_or(Error::Decode("no group"))?;
                let cts = full(group.done);
                match group.purpose {
                    Purpose::Relu(round) if self.relu_only => {
                        Ok(Some(ServerMessage::Round(RoundRequest {
                            round,
                            period: len,
                            sign_scale,
                            relu: cts,
                            refresh: Vec::new(),
                        })))
                    }
                    Purpose::Relu(round) => {
                        self.relu = Some((round, len, sign_scale, cts));
                        Ok(None)
                    }
                    Purpose::Refresh(round) => {
                        let (_, period, sign_scale, relu) =
                            self.relu.take().ok_or(Error::Decode("no ReLU message"))?;
                        Ok(Some(ServerMessage::Round(RoundRequest {
                            round,
                            period,
                            sign_scale,
                            relu,
                            refresh: cts,
                        })))
                    }
                    Purpose::Output => Ok(Some(ServerMessage::Output(OutputMessage {
                        len,
                        output: cts,
                    }))),
                    _ => Err(Error::Decode("unexpected ciphertext group")),
                }
            }
            _ => Err(Error::Decode("not a ciphertext frame")),
        }
    }
}
