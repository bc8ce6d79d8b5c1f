//! flux-recv: a small, hardened webhook receiver that turns git and image pushes into Flux
//! notifications. The request path runs through the layers in this order:
//! [`server`] (HTTP transport) → [`delivery`] (route, source, fan-out, [`verdict`]) →
//! [`sources`] (pure providers) → [`downstream`] (fluxd, Flux v2 receivers, redelivery).
//! [`app`] wires them for `main.rs` and the tests.
#![forbid(unsafe_code)]

pub mod app;
pub mod change;
pub mod cidr;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod downstream;
pub mod log;
pub mod metrics;
pub mod reload;
pub mod server;
pub mod signature;
pub mod sources;
pub mod sync;
pub mod text;
pub mod tokeninfo;
pub mod verdict;
