//! Outbound pipeline tests against the emulator over real HTTP, with the real acme-accounts
//! plugin and a redb store on a real file.

mod artifacts;
mod bulk;
mod collection;
mod common;
mod conflict;
mod crash;
mod deletes;
mod fairness;
mod governor;
mod hostile;
mod isolation;
mod kill;
mod lock_row;
mod replay;
mod retry_restart;
mod service;
