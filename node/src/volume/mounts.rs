//! A container's bind mounts from its `volumeMounts`: subPath and subPathExpr resolved inside
//! the volume (never escaping it through a symlink), read-only where the mount or the volume
//! says so.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, VolumeMount};

use super::{Error, PodVolumes, Result};
use crate::runtime::Mount;

/// Why a subPath could not be used.
#[derive(Debug)]
enum SubPathError {
    Invalid(String),
    Io { action: &'static str, path: PathBuf, source: io::Error },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SubPathError {
    move |source| SubPathError::Io { action, path: path.to_path_buf(), source }
}

/// The bind mounts of `container`.
pub(super) fn container_mounts(pod: &str, volumes: &PodVolumes, container: &Container) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let invalid = |reason: String| Error::Mount {
            pod: pod.to_string(),
            container: container.name.clone(),
            volume: vm.name.clone(),
            reason,
        };
        let Some(volume_path) = volumes.paths.get(&vm.name) else {
            return Err(Error::UnknownVolume {
                pod: pod.to_string(),
                container: container.name.clone(),
                volume: vm.name.clone(),
                known: volumes.paths.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        if !vm.mount_path.starts_with('/') {
            return Err(invalid(format!("mountPath {:?} must be an absolute path", vm.mount_path)));
        }
        let host_path = match sub_path(vm, container).map_err(invalid)? {
            None => volume_path.clone(),
            Some(sub) => {
                if volumes.files.contains(&vm.name) {
                    return Err(invalid(format!(
                        "subPath {sub:?} needs a directory, and the volume is a single file"
                    )));
                }
                resolve_sub_path(volume_path, &sub).map_err(|e| match e {
                    SubPathError::Invalid(reason) => invalid(reason),
                    SubPathError::Io { action, path, source } => Error::MountIo {
                        pod: pod.to_string(),
                        container: container.name.clone(),
                        volume: vm.name.clone(),
                        action,
                        path,
                        source,
                    },
                })?
            }
        };
        out.push(Mount {
            host_path,
            container_path: PathBuf::from(&vm.mount_path),
            read_only: vm.read_only == Some(true) || volumes.read_only.contains(&vm.name),
        });
    }
    Ok(out)
}

/// The mount's subPath, or its subPathExpr expanded with the container's literal env values.
fn sub_path(vm: &VolumeMount, container: &Container) -> Result<Option<String>, String> {
    match (
        vm.sub_path.as_deref().filter(|s| !s.is_empty()),
        vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(_), Some(_)) => Err("subPath and subPathExpr are mutually exclusive".into()),
        (Some(s), None) => Ok(Some(s.to_string())),
        (None, Some(expr)) => expand(expr, container).map(Some),
        (None, None) => Ok(None),
    }
}

/// Expands `$(NAME)` from the container's env entries with a literal `value`; `$$` is a `$`.
fn expand(expr: &str, container: &Container) -> Result<String, String> {
    let lookup = |name: &str| {
        container.env.iter().flatten().rev().find(|e| e.name == name).map(|e| {
            match (&e.value, &e.value_from) {
                (_, Some(_)) => {
                    Err(format!("subPathExpr variable {name:?} uses valueFrom, which is not supported here"))
                }
                (v, None) => Ok(v.clone().unwrap_or_default()),
            }
        })
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match lookup(name) {
                Some(value) => out.push_str(&value?),
                None => {
                    return Err(format!(
                        "subPathExpr {expr:?} uses {name:?}, which the container's env does not set"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `sub` under `volume`: missing directories are created with the volume's permissions, and
/// every existing component is resolved so that a symlink cannot lead out of the volume.
fn resolve_sub_path(volume: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    let rel = Path::new(sub);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(SubPathError::Invalid(format!(
            "subPath {sub:?} must be a relative path without \"..\" elements"
        )));
    }
    let base = fs::canonicalize(volume).map_err(io_err("resolving", volume))?;
    let mode =
        fs::metadata(&base).map_err(io_err("reading metadata of", &base))?.permissions().mode() & 0o7777;
    let escapes = |p: &Path| {
        SubPathError::Invalid(format!("subPath {sub:?} leads to {}, outside the volume", p.display()))
    };
    let mut current = base.clone();
    for part in rel.components() {
        let Component::Normal(part) = part else { continue };
        let next = current.join(part);
        match fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => {
                let resolved = fs::canonicalize(&next).map_err(io_err("resolving", &next))?;
                if !resolved.starts_with(&base) {
                    return Err(escapes(&resolved));
                }
                current = resolved;
            }
            Ok(_) => current = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&next).map_err(io_err("creating directory", &next))?;
                fs::set_permissions(&next, fs::Permissions::from_mode(mode))
                    .map_err(io_err("setting permissions of", &next))?;
                current = next;
            }
            Err(e) => return Err(io_err("reading metadata of", &next)(e)),
        }
    }
    let resolved = fs::canonicalize(&current).map_err(io_err("resolving", &current))?;
    if !resolved.starts_with(&base) {
        return Err(escapes(&resolved));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource};

    use super::*;

    #[test]
    fn sub_path_expr_expansion() {
        let container = Container {
            env: Some(vec![
                EnvVar { name: "POD".into(), value: Some("web-0".into()), value_from: None },
                EnvVar { name: "FROM".into(), value: None, value_from: Some(EnvVarSource::default()) },
            ]),
            ..Default::default()
        };
        assert_eq!(expand("logs/$(POD)", &container), Ok("logs/web-0".into()));
        assert_eq!(expand("$$(POD)-$x", &container), Ok("$(POD)-$x".into()));
        assert!(expand("$(NOPE)", &container).expect_err("unset").contains("\"NOPE\""));
        assert!(expand("$(FROM)", &container).expect_err("valueFrom").contains("valueFrom"));
    }

    #[test]
    fn sub_paths_stay_inside_the_volume() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let volume = tmp.path().join("vol");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(&volume).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::set_permissions(&volume, fs::Permissions::from_mode(0o750)).expect("chmod");
        let made = resolve_sub_path(&volume, "a/b").expect("created inside");
        assert_eq!(made, fs::canonicalize(volume.join("a/b")).expect("exists"));
        assert_eq!(fs::metadata(&made).expect("exists").permissions().mode() & 0o777, 0o750);

        std::os::unix::fs::symlink(&outside, volume.join("evil")).expect("symlink");
        match resolve_sub_path(&volume, "evil/new") {
            Err(SubPathError::Invalid(m)) => assert!(m.contains("outside the volume"), "{m}"),
            other => panic!("a symlink out of the volume must be refused, got {other:?}"),
        }
        assert!(!outside.join("new").exists(), "nothing is created outside the volume");
        std::os::unix::fs::symlink("a", volume.join("inner")).expect("symlink");
        assert_eq!(resolve_sub_path(&volume, "inner/b").expect("inside"), made);
        assert!(matches!(resolve_sub_path(&volume, "../x"), Err(SubPathError::Invalid(_))));
        assert!(matches!(resolve_sub_path(&volume, "/etc"), Err(SubPathError::Invalid(_))));
    }
}
