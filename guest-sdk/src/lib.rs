//! Write Weft plugins in Rust.
//!
//! A plugin is one type that implements [`Plugin`] (every method has a default) and one
//! line that exports it:
//!
//! ```ignore
//! use weft_guest::prelude::*;
//!
//! #[derive(Default)]
//! struct Upper;
//!
//! impl Plugin for Upper {
//!     fn map_inbound(&self, _cx: &Cx, rec: Record<'_>, out: &mut Emit) -> Result<(), String> {
//!         let mut w = out.record("Company");
//!         w.set("name", rec.get("Name").as_str().map(str::to_uppercase));
//!         Ok(())
//!     }
//! }
//!
//! weft_guest::export_plugin!(Upper);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; unit-test it natively with
//! [`testing::Harness`] and plain `cargo test`.
//!
//! The records a plugin sees are borrowed, typed views ([`Record`], [`Val`]) over the
//! columnar batch that crosses the component boundary; what it emits goes through
//! [`Emit`] into the same layout. Plugin code never sees offsets or columns.
//!
//! This crate never depends on the host: it knows the WIT contract and nothing else.

mod batch;
mod coerce;
mod context;
mod layout;
mod plugin;
pub mod run;
pub mod testing;
pub mod values;

/// Bindings generated from `wit/`. Plugin code rarely needs them directly.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "weft_guest::bindings",
        generate_all,
        additional_derives: [PartialEq],
    });
}

pub use batch::{BatchBuilder, BatchView, Column, Emit, Record, RecordWriter, Val};
pub use bindings::exports::weft::plugin::chain::{ChainBatch, ChainResult, Stage, StageError};
pub use bindings::weft::plugin::host::LogLevel;
/// A column as it crosses the boundary (tags and payloads); only plugins that build raw
/// batches by hand need it. Not to be confused with [`Column`], a field's position.
pub use bindings::weft::plugin::types::Column as RawColumn;
pub use bindings::weft::plugin::types::{
    Batch, BatchResult, CallContext, Decision, DedupKeys, DedupResult, Direction, FieldKind,
    FieldSchema, ObjectSchema, RecordError, Resolution,
};
pub use coerce::{Coerced, coerce, coerce_value};
pub use context::Cx;
pub use layout::{Span, Value};
pub use plugin::{KeySink, Plugin};

/// The WIT package version this SDK implements.
pub const WIT_VERSION: &str = "0.1.0";

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::values;
    pub use crate::{
        Batch, Cx, Decision, Emit, FieldKind, FieldSchema, KeySink, LogLevel, ObjectSchema, Plugin,
        Record, RecordWriter, Val,
    };
}

/// Exports a [`Plugin`] type (which must also implement `Default`) as the component's
/// `mapper`, `coercer`, `resolver` and `deduper`.
///
/// Expands to nothing on native targets, so the same crate links into native tests and
/// benchmarks alongside other plugins.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod __weft_export {
            #[allow(unused_imports)]
            use super::*;
            use $crate::bindings::exports::weft::plugin as exports;
            use $crate::bindings::weft::plugin::types;

            struct Export;

            impl exports::mapper::Guest for Export {
                fn map_inbound(ctx: types::CallContext, input: types::Batch) -> types::BatchResult {
                    $crate::run::map_inbound::<$plugin>(&ctx, &input)
                }
                fn map_outbound(ctx: types::CallContext, input: types::Batch) -> types::BatchResult {
                    $crate::run::map_outbound::<$plugin>(&ctx, &input)
                }
            }

            impl exports::coercer::Guest for Export {
                fn coerce(
                    ctx: types::CallContext,
                    schema: types::ObjectSchema,
                    input: types::Batch,
                ) -> types::BatchResult {
                    $crate::run::coerce::<$plugin>(&ctx, &schema, &input)
                }
            }

            impl exports::resolver::Guest for Export {
                fn resolve(
                    ctx: types::CallContext,
                    incoming: types::Batch,
                    incoming_at: Vec<i64>,
                    current: types::Batch,
                    current_modified_at: Vec<Option<i64>>,
                ) -> types::Resolution {
                    $crate::run::resolve::<$plugin>(
                        &ctx,
                        &incoming,
                        &incoming_at,
                        &current,
                        &current_modified_at,
                    )
                }
            }

            impl exports::deduper::Guest for Export {
                fn dedup_keys(ctx: types::CallContext, input: types::Batch) -> types::DedupResult {
                    $crate::run::dedup_keys::<$plugin>(&ctx, &input)
                }
            }

            impl exports::chain::Guest for Export {
                fn run(
                    ctx: types::CallContext,
                    input: types::Batch,
                    schemas: Vec<types::ObjectSchema>,
                    dedup: bool,
                ) -> exports::chain::ChainResult {
                    $crate::run::chain::<$plugin>(&ctx, &input, &schemas, dedup)
                }
            }

            $crate::bindings::export_raw!(Export with_types_in $crate::bindings);
        }
    };
}
