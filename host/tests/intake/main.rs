//! Outbound intake and the durable store: real sockets, real redb files in temp dirs, and
//! the real `weft` binary killed mid-stream.

mod common;
mod dlq;
mod edge;
mod hardening;
mod http;
mod kill;
mod store;
