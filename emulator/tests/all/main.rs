//! Integration tests: every test starts an org in-process and talks to it over real sockets.
//! One binary with topic modules, so the suite links once.

mod common;

mod admin;
mod auth;
mod bulk;
mod compound;
mod conformance;
mod deletes;
mod header_case;
mod limits_faults;
mod orgs;
mod query;
mod writes;
