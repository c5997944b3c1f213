//! # hefun server
//!
//! The server side of HeFUN: [`eval`] evaluates linear layers on CKKS ciphertexts (hybrid key
//! switching, hoisted rotations, baby-step/giant-step matrix–vector products) and prepares
//! ciphertexts for the client (re-randomisation, noise flooding).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
pub mod eval;
pub mod model;
pub mod net;
pub mod protocol;
