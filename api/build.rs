//! Compiles Kubernetes' `generated.proto` schemas, as shipped in the `k8s-rs-pb` crate's
//! sources, into a descriptor set with protox (no `protoc` needed). The server uses it to
//! decode protobuf request bodies (`src/server/protobuf`).
//!
//! The crate's sources are found in Cargo's registry (`$CARGO_HOME/registry/src/*/`), or in
//! `$FLOTILLA_K8S_PROTOS` (a directory holding `api/`, `apimachinery/`, ...) when set, e.g.
//! for vendored builds.

use std::path::{Path, PathBuf};

/// The `k8s-rs-pb` release whose protos are compiled (pinned in the workspace manifest).
const CRATE: &str = "k8s-rs-pb-0.5.0";
/// The Kubernetes version of those protos.
const VERSION_DIR: &str = "src/v1_33";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FLOTILLA_K8S_PROTOS");
    let root = protos_dir().ok_or_else(|| {
        format!("the sources of {CRATE} were not found in Cargo's registry; set FLOTILLA_K8S_PROTOS to its {VERSION_DIR}")
    })?;
    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    files.sort();
    let fds = protox::Compiler::new([&root])?
        .include_imports(true)
        .open_files(&files)?
        .encode_file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    std::fs::write(out, fds)?;
    Ok(())
}

/// The directory holding the protos.
fn protos_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FLOTILLA_K8S_PROTOS") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let registries = std::fs::read_dir(home.join("registry").join("src")).ok()?;
    registries
        .filter_map(Result::ok)
        .map(|r| r.path().join(CRATE).join(VERSION_DIR))
        .find(|p| p.join("api").is_dir())
}

/// Every `.proto` file under `dir`, relative to `root` (the import root), skipping the
/// apimachinery test group.
fn collect(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !path.ends_with("testapigroup") {
                collect(root, &path, files)?;
            }
        } else if path.extension().is_some_and(|e| e == "proto")
            && let Ok(rel) = path.strip_prefix(root)
        {
            files.push(rel.to_path_buf());
        }
    }
    Ok(())
}
