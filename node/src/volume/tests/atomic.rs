//! The atomic writer: versions behind `..data`, swapped in one rename.

use std::fs;
use std::path::Path;

use super::{mode, read};
use crate::volume::atomic::{DATA_DIR, commit, stage, validate_path, write};
use crate::volume::payload::{FileProjection, Payload};

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files
        .iter()
        .map(|(p, d, m)| (p.to_string(), FileProjection { data: d.as_bytes().to_vec(), mode: *m }))
        .collect()
}

fn data_dir(target: &Path) -> String {
    fs::read_link(target.join(DATA_DIR)).expect("..data is a symlink").to_string_lossy().into_owned()
}

fn entries(target: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(target)
        .expect("the volume directory exists")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn first_write_lays_out_versions_and_links() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let target = tmp.path().join("vol");
    let p = payload(&[("a", "A", 0o644), ("dir/b", "B", 0o400)]);
    assert!(write(&target, &p).expect("first write"), "a first write changes the volume");
    let version = data_dir(&target);
    assert!(version.starts_with("..") && version != DATA_DIR, "{version}");
    assert_eq!(entries(&target), vec![version.clone(), DATA_DIR.to_string(), "a".into(), "dir".into()]);
    assert_eq!(fs::read_link(target.join("a")).expect("a symlink"), Path::new("..data/a"));
    assert_eq!(read(&target.join("a")), "A");
    assert_eq!(read(&target.join("dir/b")), "B");
    assert_eq!(mode(&target.join(&version).join("dir/b")), 0o400);
    assert_eq!(mode(&target.join(&version).join("a")), 0o644);
    assert!(!write(&target, &p).expect("same payload"), "an unchanged payload writes nothing");
    assert_eq!(data_dir(&target), version);
}

#[test]
fn update_is_invisible_until_the_swap() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let target = tmp.path().join("vol");
    write(&target, &payload(&[("a", "old", 0o644), ("gone", "x", 0o644)])).expect("first write");
    let old = data_dir(&target);

    let staged = stage(&target, &payload(&[("a", "new", 0o600), ("added", "y", 0o644)]))
        .expect("stage")
        .expect("a different payload is staged");
    assert_eq!(read(&target.join("a")), "old", "readers see the old version until the swap");
    assert_eq!(data_dir(&target), old);
    assert!(!target.join("added").exists());

    commit(staged).expect("commit");
    let new = data_dir(&target);
    assert_ne!(new, old);
    assert_eq!(read(&target.join("a")), "new");
    assert_eq!(read(&target.join("added")), "y");
    assert_eq!(mode(&target.join(&new).join("a")), 0o600);
    assert!(!target.join(&old).exists(), "the old version is removed");
    assert!(fs::symlink_metadata(target.join("gone")).is_err(), "a removed key's link is removed");
    assert_eq!(entries(&target), vec![new, DATA_DIR.to_string(), "a".into(), "added".into()]);

    // A mode change alone is a change.
    assert!(write(&target, &payload(&[("a", "new", 0o644), ("added", "y", 0o644)])).expect("mode change"));
}

#[test]
fn empty_payload_and_crash_leftovers() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let target = tmp.path().join("vol");
    assert!(write(&target, &Payload::new()).expect("empty write"));
    assert_eq!(entries(&target).len(), 2, "a version and ..data");
    // A version a crash left behind is cleaned up by the next update.
    fs::create_dir(target.join("..1_000000000_0")).expect("mkdir");
    write(&target, &payload(&[("k", "v", 0o644)])).expect("write");
    assert_eq!(entries(&target), vec![data_dir(&target), DATA_DIR.to_string(), "k".into()]);
    // A lost user-visible link is repaired even when nothing changed.
    fs::remove_file(target.join("k")).expect("rm");
    assert!(!write(&target, &payload(&[("k", "v", 0o644)])).expect("write"));
    assert_eq!(read(&target.join("k")), "v");
}

#[test]
fn payload_paths_are_validated() {
    for bad in ["", "/abs", "../x", "a/../b", "..data", "a//b", "./a"] {
        assert!(validate_path(bad).is_err(), "{bad:?} must be refused");
    }
    for good in ["a", "a/b", "a.txt", "x..y"] {
        assert_eq!(validate_path(good), Ok(()), "{good:?}");
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let err = write(&tmp.path().join("vol"), &payload(&[("../escape", "x", 0o644)])).expect_err("a bad path");
    assert!(matches!(err, crate::volume::Failure::Invalid(m) if m.contains("../escape")));
    assert!(!tmp.path().join("escape").exists());
}
