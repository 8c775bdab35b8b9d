//! Host-side bindings generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq],
});

pub use weft::plugin::host as host_imports;
pub use weft::plugin::types;
