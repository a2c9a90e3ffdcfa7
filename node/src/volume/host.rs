//! hostPath volumes (and the host paths of PersistentVolumes): the `type` checks of the
//! kubelet's `hostpath` plugin.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::Failure;

/// Permissions of a directory made for `DirectoryOrCreate`.
const CREATED_DIR_MODE: u32 = 0o755;
/// Permissions of a file made for `FileOrCreate`.
const CREATED_FILE_MODE: u32 = 0o644;

/// A host path checked against its `type`; `file` is true when it is not a directory (a
/// bind mount of a single file, which cannot take a subPath).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct HostPath {
    pub(super) path: PathBuf,
    pub(super) file: bool,
}

/// What kind of file the path holds, as `type` names them.
fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "Directory"
    } else if t.is_file() {
        "File"
    } else if t.is_socket() {
        "Socket"
    } else if t.is_char_device() {
        "CharDevice"
    } else if t.is_block_device() {
        "BlockDevice"
    } else {
        "something else"
    }
}

/// Checks (and for the `...OrCreate` types makes) `path` according to `type_`.
pub(super) fn prepare(path: &str, type_: Option<&str>) -> Result<HostPath, Failure> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return Err(Failure::Invalid(format!("hostPath {path:?} must be absolute without \"..\" elements")));
    }
    let existing = match fs::metadata(p) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Failure::fs("reading metadata of", p)(e)),
    };
    let type_ = type_.unwrap_or_default();
    let want = match type_ {
        "" => {
            // No check: whatever is there (or nothing, which the runtime will complain about).
            let file = existing.as_ref().is_some_and(|m| !m.is_dir());
            return Ok(HostPath { path: p.to_path_buf(), file });
        }
        "DirectoryOrCreate" if existing.is_none() => {
            fs::create_dir_all(p).map_err(Failure::fs("creating directory", p))?;
            fs::set_permissions(p, fs::Permissions::from_mode(CREATED_DIR_MODE))
                .map_err(Failure::fs("setting permissions of", p))?;
            return Ok(HostPath { path: p.to_path_buf(), file: false });
        }
        "FileOrCreate" if existing.is_none() => {
            // As the kubelet: the parent directory must exist.
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(CREATED_FILE_MODE)
                .open(p)
                .map_err(Failure::fs("creating file", p))?;
            return Ok(HostPath { path: p.to_path_buf(), file: true });
        }
        "DirectoryOrCreate" | "Directory" => "Directory",
        "FileOrCreate" | "File" => "File",
        "Socket" | "CharDevice" | "BlockDevice" => type_,
        other => {
            return Err(Failure::Invalid(format!(
                "hostPath type {other:?} is not one of DirectoryOrCreate, Directory, FileOrCreate, File, \
                 Socket, CharDevice, BlockDevice"
            )));
        }
    };
    let Some(meta) = existing else {
        return Err(Failure::Invalid(format!(
            "hostPath type check failed: {path} does not exist (type {type_})"
        )));
    };
    let found = kind_of(&meta);
    if found != want {
        return Err(Failure::Invalid(format!(
            "hostPath type check failed: {path} is a {found}, not a {want} (type {type_})"
        )));
    }
    Ok(HostPath { path: p.to_path_buf(), file: want != "Directory" })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn reason(r: Result<HostPath, Failure>) -> String {
        match r {
            Err(Failure::Invalid(m)) => m,
            other => panic!("expected an invalid hostPath, got {other:?}"),
        }
    }

    #[test]
    fn types_are_checked_and_created() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let root = tmp.path();
        let s = |p: &Path| p.to_str().expect("UTF-8 temp path").to_string();
        let dir = root.join("a/b");
        let made = prepare(&s(&dir), Some("DirectoryOrCreate")).expect("creates the directory");
        assert_eq!(made, HostPath { path: dir.clone(), file: false });
        assert!(dir.is_dir());
        assert_eq!(
            prepare(&s(&dir), Some("Directory")).ok(),
            Some(HostPath { path: dir.clone(), file: false })
        );

        let file = root.join("f");
        let made = prepare(&s(&file), Some("FileOrCreate")).expect("creates the file");
        assert!(made.file && file.is_file());
        assert_eq!(fs::metadata(&file).expect("created").permissions().mode() & 0o777, 0o644);
        assert!(prepare(&s(&file), Some("File")).is_ok());
        let m = reason(prepare(&s(&file), Some("Directory")));
        assert!(m.contains("is a File, not a Directory"), "{m}");
        let m = reason(prepare(&s(&dir), Some("FileOrCreate")));
        assert!(m.contains("is a Directory, not a File"), "{m}");
        let m = reason(prepare(&s(&root.join("missing")), Some("File")));
        assert!(m.contains("does not exist"), "{m}");
        assert!(matches!(
            prepare(&s(&root.join("no/parent")), Some("FileOrCreate")),
            Err(Failure::Fs { .. })
        ));

        let sock = root.join("s.sock");
        let _listener = UnixListener::bind(&sock).expect("bind a unix socket");
        assert_eq!(
            prepare(&s(&sock), Some("Socket")).ok(),
            Some(HostPath { path: sock.clone(), file: true })
        );
        assert!(reason(prepare(&s(&sock), Some("CharDevice"))).contains("is a Socket"));
        assert!(prepare("/dev/null", Some("CharDevice")).is_ok());

        assert!(reason(prepare(&s(&dir), Some("Bogus"))).contains("\"Bogus\""));
        assert!(reason(prepare("relative/path", None)).contains("absolute"));
        assert!(reason(prepare("/a/../b", None)).contains(".."));
        assert_eq!(prepare(&s(&file), None).ok(), Some(HostPath { path: file, file: true }));
    }
}
