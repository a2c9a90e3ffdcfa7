//! The durability model on the tree directly, then the whole file system through FUSE.

use std::ffi::OsStr;
use std::io::Write as _;

use fuser::Errno;
use rand::SeedableRng as _;
use rand::rngs::StdRng;

use super::tree::{Kind, ROOT, Tree};
use super::{LossyFs, unavailable};

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn content(tree: &Tree, parent: u64, file: &str) -> Option<Vec<u8>> {
    let ino = tree.lookup(parent, name(file)).ok()?.ino;
    Some(tree.read(ino, 0, u32::MAX).ok()?.to_vec())
}

/// A file `f` in the root holding `synced`, synced with its directory entry, then `extra`
/// appended and not synced.
fn synced_then_appended(synced: &[u8], extra: &[u8]) -> Tree {
    let mut t = Tree::new(0, 0);
    let f = t.create(ROOT, name("f"), Kind::File, 0o644, 0, 0).expect("create").ino;
    t.write(f, 0, synced, false).expect("write");
    t.fsync(f).expect("fsync");
    t.fsyncdir(ROOT).expect("fsyncdir");
    t.write(f, 0, extra, true).expect("append");
    t
}

#[test]
fn synced_bytes_always_survive_and_unsynced_ones_survive_as_a_prefix() {
    let (mut reverted, mut torn, mut kept) = (0, 0, 0);
    for seed in 0..200 {
        let mut t = synced_then_appended(b"synced;", b"unsynced tail");
        let report = t.power_loss(&mut StdRng::seed_from_u64(seed));
        let after = content(&t, ROOT, "f").expect("a synced entry survives");
        assert!(after.starts_with(b"synced;"), "seed {seed}: {after:?}");
        assert!(b"synced;unsynced tail".starts_with(&after), "seed {seed}: {after:?}");
        reverted += report.files_reverted;
        torn += report.files_torn;
        kept += report.files_kept;
        // What survived is durable now: a second power loss changes nothing.
        t.power_loss(&mut StdRng::seed_from_u64(seed + 1000));
        assert_eq!(content(&t, ROOT, "f"), Some(after), "seed {seed}");
    }
    assert!(reverted > 0 && torn > 0 && kept > 0, "every outcome drawn: {reverted} {torn} {kept}");
}

#[test]
fn a_new_file_needs_its_directory_synced() {
    let mut seen = [false; 2];
    for seed in 0..50 {
        let mut t = Tree::new(0, 0);
        let f = t.create(ROOT, name("new"), Kind::File, 0o644, 0, 0).expect("create").ino;
        t.write(f, 0, b"data", false).expect("write");
        t.fsync(f).expect("fsync");
        let report = t.power_loss(&mut StdRng::seed_from_u64(seed));
        let after = content(&t, ROOT, "new");
        if report.metadata_committed {
            assert_eq!(after.as_deref(), Some(&b"data"[..]), "seed {seed}");
        } else {
            assert_eq!(after, None, "seed {seed}: the unsynced entry is lost");
            assert_eq!(report.nodes_lost, 1);
        }
        seen[usize::from(report.metadata_committed)] = true;
    }
    assert_eq!(seen, [true, true], "both metadata outcomes drawn");
}

#[test]
fn unsynced_renames_and_unlinks_come_undone_and_synced_ones_do_not() {
    for seed in 0..50 {
        let mut t = Tree::new(0, 0);
        let a = t.create(ROOT, name("a"), Kind::File, 0o644, 0, 0).expect("create").ino;
        t.write(a, 0, b"old", false).expect("write");
        t.fsync(a).expect("fsync");
        let tmp = t.create(ROOT, name("tmp"), Kind::File, 0o644, 0, 0).expect("create").ino;
        t.write(tmp, 0, b"new", false).expect("write");
        t.fsync(tmp).expect("fsync");
        t.fsyncdir(ROOT).expect("fsyncdir");
        // Replace `a` by `tmp` without syncing the directory: `a` may come back as it was.
        t.rename(ROOT, name("tmp"), ROOT, name("a"), false).expect("rename");
        let report = t.power_loss(&mut StdRng::seed_from_u64(seed));
        let expected: &[u8] = if report.metadata_committed { b"new" } else { b"old" };
        assert_eq!(content(&t, ROOT, "a").as_deref(), Some(expected), "seed {seed}");
        assert_eq!(content(&t, ROOT, "tmp").is_some(), !report.metadata_committed, "seed {seed}");
    }
    let mut t = Tree::new(0, 0);
    let f = t.create(ROOT, name("f"), Kind::File, 0o644, 0, 0).expect("create").ino;
    t.fsyncdir(ROOT).expect("fsyncdir");
    t.unlink(ROOT, name("f")).expect("unlink");
    assert_eq!(t.len(), 2, "a durably named file is kept until its directory is synced");
    t.fsyncdir(ROOT).expect("fsyncdir");
    assert_eq!(t.len(), 1, "then it is freed");
    assert_eq!(t.attr(f).map(|_| ()), Err(Errno::ENOENT));
}

#[test]
fn open_files_outlive_their_names_until_closed() {
    let mut t = Tree::new(0, 0);
    let f = t.create(ROOT, name("f"), Kind::File, 0o644, 0, 0).expect("create").ino;
    let fh = t.open(f, false).expect("open");
    t.unlink(ROOT, name("f")).expect("unlink");
    t.write(f, 0, b"still writable", false).expect("write after unlink");
    assert_eq!(t.read(f, 6, 100).expect("read"), b"writable");
    t.release(fh);
    assert_eq!(t.len(), 1);
}

#[test]
fn rename_and_rmdir_refuse_what_posix_refuses() {
    let mut t = Tree::new(0, 0);
    let d = t.create(ROOT, name("d"), Kind::Dir, 0o755, 0, 0).expect("mkdir").ino;
    t.create(d, name("f"), Kind::File, 0o644, 0, 0).expect("create");
    t.create(ROOT, name("e"), Kind::Dir, 0o755, 0, 0).expect("mkdir");
    t.create(ROOT, name("g"), Kind::File, 0o644, 0, 0).expect("create");
    assert_eq!(t.rmdir(ROOT, name("d")), Err(Errno::ENOTEMPTY));
    assert_eq!(t.unlink(ROOT, name("d")), Err(Errno::EISDIR));
    assert_eq!(t.rename(ROOT, name("e"), ROOT, name("d"), false), Err(Errno::ENOTEMPTY));
    assert_eq!(t.rename(ROOT, name("d"), d, name("inside"), false), Err(Errno::EINVAL));
    assert_eq!(t.rename(ROOT, name("g"), ROOT, name("e"), false), Err(Errno::EISDIR));
    assert_eq!(t.rename(ROOT, name("e"), ROOT, name("g"), false), Err(Errno::ENOTDIR));
    assert_eq!(t.rename(ROOT, name("g"), d, name("f"), true), Err(Errno::EEXIST));
    assert_eq!(t.create(ROOT, name("g"), Kind::File, 0o644, 0, 0).map(|_| ()), Err(Errno::EEXIST));
    t.rename(ROOT, name("g"), d, name("f"), false).expect("a file replaces a file");
    assert_eq!(t.entries(d).expect("entries").len(), 1);
    assert_eq!(t.entries(ROOT).expect("entries").len(), 2);
}

#[test]
fn truncation_is_unsynced_like_any_write() {
    for seed in 0..30 {
        let mut t = synced_then_appended(b"0123456789", b"");
        let f = t.lookup(ROOT, name("f")).expect("f").ino;
        t.setattr(f, None, None, None, Some(4)).expect("truncate");
        t.write(f, 0, b"ab", true).expect("append");
        assert_eq!(t.read(f, 0, 100).expect("read"), b"0123ab");
        t.power_loss(&mut StdRng::seed_from_u64(seed));
        let after = content(&t, ROOT, "f").expect("f survives");
        // Reverted, kept, or the kernel wrote back the bytes below some offset.
        let ok = [&b"0123456789"[..], b"0123ab", b"0123a56789", b"0123ab6789"].contains(&after.as_slice());
        assert!(ok, "seed {seed}: {:?}", String::from_utf8_lossy(&after));
    }
}

/// Whether FUSE tests can run; when they cannot and `FLOTILLA_REQUIRE_FUSE=1`, fails.
pub(super) fn fuse_ready() -> bool {
    match unavailable() {
        None => true,
        Some(why) if std::env::var("FLOTILLA_REQUIRE_FUSE").is_ok_and(|v| v == "1") => {
            panic!("FLOTILLA_REQUIRE_FUSE=1 but {why}")
        }
        Some(why) => {
            println!("skipped: {why}");
            false
        }
    }
}

#[test]
fn through_fuse_only_synced_data_is_sure_to_survive() {
    if !fuse_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = dir.path().join("disk");
    let mut fs = LossyFs::mount(&mount).expect("mount");
    std::fs::create_dir(mount.join("db")).expect("mkdir");
    std::fs::File::open(&mount).expect("open root").sync_all().expect("fsync root");
    let log = mount.join("db/log");
    let mut f = std::fs::File::create(&log).expect("create");
    f.write_all(b"committed;").expect("write");
    f.sync_data().expect("fdatasync");
    std::fs::File::open(mount.join("db")).expect("open db").sync_all().expect("fsync db");
    f.write_all(b"in the cache").expect("write");
    drop(f);
    std::fs::write(mount.join("db/unsynced"), b"gone?").expect("write");
    assert_eq!(std::fs::read(&log).expect("read"), b"committed;in the cache");

    let report = fs.power_loss(7).expect("power loss");
    let after = std::fs::read(&log).expect("the synced log survives");
    assert!(after.starts_with(b"committed;"), "{after:?}");
    assert!(b"committed;in the cache".starts_with(&after), "{after:?}");
    // The unsynced file's entry survives exactly when the directory changes were committed.
    assert_eq!(mount.join("db/unsynced").exists(), report.metadata_committed, "{report}");
    // What survived is on disk now: another power loss keeps it as it is.
    fs.power_loss(8).expect("power loss");
    assert_eq!(std::fs::read(&log).expect("read"), after);
    // The file system works after a power loss, and unmounts cleanly.
    std::fs::write(mount.join("db/after"), b"x").expect("write after");
    let names: Vec<_> =
        std::fs::read_dir(mount.join("db")).expect("readdir").flatten().map(|e| e.file_name()).collect();
    assert!(names.contains(&"after".into()) && names.contains(&"log".into()), "{names:?}");
    fs.unmount().expect("unmount");
    assert!(!mount.join("db").exists(), "unmounted: the mount point is empty again");
}
