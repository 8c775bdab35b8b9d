//! Host-side bindings generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    additional_derives: [PartialEq],
});

pub use self::exports::weft::plugin::chain;
pub use self::weft::plugin::host as host_imports;
pub use self::weft::plugin::types;
