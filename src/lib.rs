//! flux-recv: a small, hardened webhook receiver that turns git and image pushes into Flux
//! daemon notifications. `main.rs` wires flags to these modules; tests use them directly.
#![forbid(unsafe_code)]

pub mod change;
pub mod config;
pub mod error;
pub mod fluxd;
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod metrics;
pub mod server;
pub mod signature;
pub mod sources;
pub mod tokeninfo;
