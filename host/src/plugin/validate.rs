//! Checks a component against the contract before it is ever instantiated: it may import
//! only our host interface and the WASI p2 interfaces Rust's std pulls in (all of them
//! backed by a locked-down context), and it must export our interfaces at a WIT version
//! this host accepts.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::error::LoadError;

/// WIT package versions of `weft:plugin` this host runs.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];

/// The exports every plugin carries (the guest SDK defaults what a plugin leaves out).
const REQUIRED_EXPORTS: &[&str] = &["mapper", "coercer", "resolver", "deduper", "chain"];

/// WASI interfaces a plugin may import. Rust's std for `wasm32-wasip2` imports these even
/// when the plugin never touches them; the sandbox satisfies each with an empty or frozen
/// implementation (no preopens, no env, no args, a frozen clock, seeded randomness).
/// Sockets, HTTP and anything else are refused at load time.
const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// What a component imports and exports, as `weft plugin check` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ComponentReport {
    pub wit_version: String,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// Splits `ns:pkg/iface@1.2.3` into (`ns:pkg/iface`, `Some("1.2.3")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

pub fn check(engine: &Engine, component: &Component) -> Result<ComponentReport, LoadError> {
    let ty = component.component_type();
    let mut imports = Vec::new();
    for (name, _) in ty.imports(engine) {
        let (base, version) = split_version(name);
        let allowed = if base == "weft:plugin/host" || base == "weft:plugin/types" {
            check_version(version)?;
            true
        } else {
            ALLOWED_WASI.contains(&base)
        };
        if !allowed {
            return Err(LoadError::ForbiddenImport {
                import: name.to_owned(),
            });
        }
        imports.push(name.to_owned());
    }

    let mut exports = Vec::new();
    let mut wit_version = None;
    for (name, item) in ty.exports(engine) {
        let (base, version) = split_version(name);
        if let Some(iface) = base.strip_prefix("weft:plugin/") {
            let version = check_version(version)?;
            wit_version.get_or_insert_with(|| version.to_owned());
            if matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                exports.push(iface.to_owned());
            }
        }
    }
    for required in REQUIRED_EXPORTS {
        if !exports.iter().any(|e| e == required) {
            return Err(LoadError::MissingExport(format!("weft:plugin/{required}")));
        }
    }
    Ok(ComponentReport {
        wit_version: wit_version.unwrap_or_default(),
        exports,
        imports,
    })
}

fn check_version(version: Option<&str>) -> Result<&str, LoadError> {
    let found = version.unwrap_or("(none)");
    if SUPPORTED_WIT_VERSIONS.contains(&found) {
        Ok(found)
    } else {
        Err(LoadError::UnsupportedWitVersion {
            found: found.to_owned(),
            supported: SUPPORTED_WIT_VERSIONS.join(", "),
        })
    }
}
