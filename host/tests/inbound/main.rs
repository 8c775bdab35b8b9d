//! Inbound sync against the emulator over real HTTP, with a real plugin component, real
//! redb files and real sink files: backfill over REST and Bulk, resume, incremental changes
//! and deletes, schema evolution, plugin failures, SIGKILL at random moments, and memory
//! that stays flat over a million rows.

mod backfill;
mod common;
mod compound;
mod config_check;
mod equivalence;
mod evolution;
mod http_sink;
mod incremental;
mod kill;
mod memory;
mod service;
