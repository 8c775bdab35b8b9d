//! End-to-end tests: the real host against real wasm components built from `plugins/`
//! (and, as the sync pipelines land, the emulator over real sockets). One test binary with
//! a module per topic, so the suite links once.

mod plugins;
mod sandbox;
