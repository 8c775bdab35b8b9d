//! Shared fixtures for the end-to-end tests: the real plugins, built once per test run.
//!
//! The plugins in `plugins/` are compiled to `wasm32-wasip2` components the first time a
//! test asks for one. They build into their own target directory so the nested cargo never
//! waits on the lock of the cargo running the tests; every later request in the run, from
//! any test binary, is a no-op build.
//!
//! That directory is per checkout (`target/plugin-builds/<checkout>-<hash>`): checkouts
//! that share one target directory would otherwise build into the same place, and cargo,
//! which fingerprints workspace crates by their relative paths, would hand one checkout the
//! other's components.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate under `plugins/`.
pub const PLUGINS: &[&str] = &[
    "acme-accounts",
    "golden-dedup",
    "field-authority",
    "hostile",
];

/// Components only the benchmarks use.
pub const BENCH_COMPONENTS: &[&str] = &["naive-abi"];

/// The checkout the running test or bench belongs to. Cargo sets `CARGO_MANIFEST_DIR` when
/// it runs a test or bench (of a crate one level below the root); the compile-time value is
/// only a fallback, since a shared target directory may hold this crate as compiled from
/// another checkout.
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

fn plugin_target_dir() -> PathBuf {
    let root = workspace_root();
    let name = root
        .file_name()
        .map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&root, &mut hasher);
    let checkout = format!(
        "{name}-{:08x}",
        std::hash::Hasher::finish(&hasher) & 0xffff_ffff
    );
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("plugin-builds")
        .join(checkout)
}

fn build_plugins() -> Result<PathBuf, String> {
    let target_dir = plugin_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_root())
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for plugin in PLUGINS.iter().chain(BENCH_COMPONENTS) {
        command.args(["-p", plugin]);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "building the plugins failed (is the target installed? `rustup target add \
             wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target_dir.join("wasm32-wasip2").join("plugin"))
}

/// The path of a built plugin component, e.g. `plugin_wasm("acme-accounts")`.
pub fn plugin_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_plugins) {
        Ok(dir) => dir.join(format!("{}.wasm", name.replace('-', "_"))),
        Err(message) => panic!("{message}"),
    }
}

/// The bytes of a built plugin component.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugin_wasm(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
