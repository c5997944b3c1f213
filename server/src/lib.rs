//! # hefun server
//!
//! The server side of HeFUN: [`eval`] evaluates linear layers on CKKS ciphertexts (hybrid key
//! switching, hoisted rotations, baby-step/giant-step matrix–vector products) and prepares
//! ciphertexts for the client (re-randomisation, noise flooding); [`model`] imports ONNX models
//! and lays them out in the slots; [`protocol`] runs HeFUN's steps (HePerm, HeRefresh, HeReLU)
//! per inference; [`net`] is the networked service (sessions, TCP, key store, metrics), and
//! [`demo`] runs client and server in one process. See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod demo;
pub mod eval;
/// What the fuzz targets (`fuzz/`) and their regression test run.
#[doc(hidden)]
pub mod fuzz_harness;
pub mod model;
pub mod net;
pub mod protocol;
