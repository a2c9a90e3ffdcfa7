//! Atomic replacement of a volume's files (the kubelet's `AtomicWriter`).
//!
//! A volume directory holds the files of one version in a timestamped directory
//! (`..<seconds>_<nanoseconds>`), a symlink `..data` naming that directory, and one
//! user-visible symlink per top-level entry (`key -> ..data/key`). An update writes the new
//! version into a fresh timestamped directory, points a temporary symlink at it and renames
//! that over `..data` (one atomic step), then adds and removes user-visible symlinks and
//! deletes the old directory. A reader sees the old files or the new ones, never a mix.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Failure;
use super::payload::{FileProjection, Payload};

/// The symlink naming the current version's directory.
pub(super) const DATA_DIR: &str = "..data";
/// The symlink renamed over [`DATA_DIR`].
const DATA_DIR_TMP: &str = "..data_tmp";
/// The longest relative path of a file.
const MAX_PATH: usize = 4096;
/// The longest path component.
const MAX_COMPONENT: usize = 255;
/// How many version directory names are tried before giving up.
const MAX_ATTEMPTS: u32 = 1000;
/// Permissions of the directories inside a version.
const DIR_MODE: u32 = 0o755;

/// Checks a payload path: relative, no `..` element, not starting with `..` (those names
/// belong to the writer).
pub(super) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("file path must not be empty".into());
    }
    if path.len() > MAX_PATH {
        return Err(format!("file path {path:?} is longer than {MAX_PATH} bytes"));
    }
    if path.starts_with("..") {
        return Err(format!("file path {path:?} must not start with \"..\""));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "file path {path:?} must be relative without \"\", \".\" or \"..\" elements"
            ));
        }
        if part.len() > MAX_COMPONENT {
            return Err(format!("file path {path:?} has an element longer than {MAX_COMPONENT} bytes"));
        }
    }
    if Path::new(path).components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("file path {path:?} must be relative"));
    }
    Ok(())
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// A new version written next to the current one, not yet visible.
#[derive(Debug)]
pub(super) struct Staged {
    target: std::path::PathBuf,
    new_dir: String,
    old_top: BTreeSet<String>,
    new_top: BTreeSet<String>,
}

/// Writes `payload` into `target` atomically; returns whether anything changed.
pub(super) fn write(target: &Path, payload: &Payload) -> Result<bool, Failure> {
    match stage(target, payload)? {
        Some(staged) => {
            commit(staged)?;
            Ok(true)
        }
        None => {
            // Unchanged; repair user-visible links a crash may have left out.
            let top: BTreeSet<String> = payload.keys().map(|p| top_level(p).to_string()).collect();
            link_visible(target, &top)?;
            Ok(false)
        }
    }
}

/// Writes the new version's directory when the payload differs from the current one.
pub(super) fn stage(target: &Path, payload: &Payload) -> Result<Option<Staged>, Failure> {
    for path in payload.keys() {
        validate_path(path).map_err(Failure::Invalid)?;
    }
    fs::create_dir_all(target).map_err(Failure::fs("creating directory", target))?;
    let data_link = target.join(DATA_DIR);
    let old_dir = match fs::read_link(&data_link) {
        Ok(name) => Some(name.to_string_lossy().into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::fs("reading symlink", &data_link)(e)),
    };
    let mut old_top = BTreeSet::new();
    if let Some(old) = &old_dir {
        let old_path = target.join(old);
        // An unreadable old version is replaced, not an error.
        let old_payload = read_tree(&old_path).ok();
        if old_payload.as_ref() == Some(payload) {
            return Ok(None);
        }
        if let Some(p) = &old_payload {
            old_top = p.keys().map(|k| top_level(k).to_string()).collect();
        }
    }
    let new_dir = create_version_dir(target)?;
    let new_path = target.join(&new_dir);
    for (path, file) in payload {
        write_file(&new_path, path, file)?;
    }
    let new_top = payload.keys().map(|p| top_level(p).to_string()).collect();
    Ok(Some(Staged { target: target.to_path_buf(), new_dir, old_top, new_top }))
}

/// Makes a staged version current, then cleans up the old one.
pub(super) fn commit(staged: Staged) -> Result<(), Failure> {
    let target = &staged.target;
    let tmp = target.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::fs("removing stale symlink", &tmp)(e)),
    }
    symlink(&staged.new_dir, &tmp).map_err(Failure::fs("creating symlink", &tmp))?;
    let data_link = target.join(DATA_DIR);
    fs::rename(&tmp, &data_link).map_err(Failure::fs("renaming symlink over", &data_link))?;
    link_visible(target, &staged.new_top)?;
    for gone in staged.old_top.difference(&staged.new_top) {
        let path = target.join(gone);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::remove_file(&path).map_err(Failure::fs("removing symlink", &path))?
            }
            _ => {}
        }
    }
    // The old version, and versions a crash left behind.
    let entries = fs::read_dir(target).map_err(Failure::fs("listing directory", target))?;
    for entry in entries {
        let entry = entry.map_err(Failure::fs("listing directory", target))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Version names start with "..", which no payload path may.
        if name.starts_with("..") && name != DATA_DIR && name != staged.new_dir {
            let path = entry.path();
            let is_dir = fs::symlink_metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
            let removed = if is_dir { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            removed.map_err(Failure::fs("removing old version", &path))?;
        }
    }
    Ok(())
}

/// Creates `name -> ..data/name` for each top-level entry that does not exist yet.
fn link_visible(target: &Path, top: &BTreeSet<String>) -> Result<(), Failure> {
    for name in top {
        let path = target.join(name);
        if fs::symlink_metadata(&path).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &path).map_err(Failure::fs("creating symlink", &path))?;
        }
    }
    Ok(())
}

/// A fresh, uniquely named version directory in `target`.
fn create_version_dir(target: &Path) -> Result<String, Failure> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    for attempt in 0..MAX_ATTEMPTS {
        let name = format!("..{}_{:09}_{attempt}", now.as_secs(), now.subsec_nanos());
        let path = target.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(DIR_MODE))
                    .map_err(Failure::fs("setting permissions of", &path))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Failure::fs("creating directory", &path)(e)),
        }
    }
    Err(Failure::Invalid(format!(
        "no unique version directory name in {} after {MAX_ATTEMPTS} attempts",
        target.display()
    )))
}

fn write_file(root: &Path, rel: &str, file: &FileProjection) -> Result<(), Failure> {
    let path = root.join(rel);
    if let Some(parent) = path.parent()
        && parent != root
    {
        fs::create_dir_all(parent).map_err(Failure::fs("creating directory", parent))?;
        // Directories made for nested paths get the same permissions as the version's own.
        let mut dir = parent;
        while dir != root {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .map_err(Failure::fs("setting permissions of", dir))?;
            dir = dir.parent().unwrap_or(root);
        }
    }
    fs::write(&path, &file.data).map_err(Failure::fs("writing file", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
        .map_err(Failure::fs("setting permissions of", &path))
}

/// The regular files under `dir` with their permission bits; anything else is an error
/// (the caller then rewrites the version).
fn read_tree(dir: &Path) -> io::Result<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let name =
                entry.file_name().into_string().map_err(|_| io::Error::other("non-UTF-8 file name"))?;
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                stack.push((entry.path(), rel));
            } else if meta.is_file() {
                let data = fs::read(entry.path())?;
                out.insert(rel, FileProjection { data, mode: meta.permissions().mode() & 0o777 });
            } else {
                return Err(io::Error::other("unexpected entry in a volume version"));
            }
        }
    }
    Ok(out)
}
