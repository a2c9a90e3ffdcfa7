//! Local images built `FROM scratch` around the host's static busybox, since no registry can
//! be reached: the sandbox's pause image, and the test image of [`crate::testing`].
//!
//! The build context is a tar made in memory: a Dockerfile with no `RUN` (nothing can run
//! before the image exists), `rootfs/bin/busybox` and one symlink per applet, and `/tmp`.
//! Builds are skipped when the tag exists, and serialized in this process so that parallel
//! tests do not build the same tag twice (which would leave a dangling image behind).

use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::TryStreamExt;
use tracing::info;

use super::error::{Error, Result, status};

/// Serializes builds within this process; see the module docs.
static BUILD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// The ELF program header type of an interpreter (a dynamic loader).
const PT_INTERP: u32 = 3;

/// An image holding only busybox, its applets and `/tmp`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BusyboxImage<'a> {
    /// The tag to build (`flotilla/pause:1`).
    pub(crate) tag: &'a str,
    /// The static busybox on the host.
    pub(crate) busybox: &'a Path,
    /// Applets linked in `/bin` (`sh`, `sleep`, ...).
    pub(crate) applets: &'a [&'a str],
    /// The image's command.
    pub(crate) cmd: &'a [&'a str],
}

/// Whether `image` exists locally.
pub(crate) async fn exists(docker: &Docker, image: &str) -> Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(error) if status(&error) == Some(404) => Ok(false),
        Err(source) => Err(Error::Docker { doing: "inspect image", object: image.to_owned(), source }),
    }
}

/// Builds the image unless its tag exists already.
pub(crate) async fn ensure(docker: &Docker, spec: &BusyboxImage<'_>) -> Result<()> {
    let _serialized = BUILD_LOCK.lock().await;
    if exists(docker, spec.tag).await? {
        return Ok(());
    }
    let image = spec.tag.to_owned();
    let busybox = tokio::fs::read(spec.busybox).await.map_err(|source| Error::ReadFile {
        path: spec.busybox.to_owned(),
        image: image.clone(),
        source,
    })?;
    check_static(&busybox).map_err(|why| Error::NotStatic {
        path: spec.busybox.to_owned(),
        image: image.clone(),
        why,
    })?;
    let context = build_context(&busybox, spec.applets, &dockerfile(spec.cmd))
        .map_err(|source| Error::Pack { image: image.clone(), source })?;
    let options = BuildImageOptionsBuilder::default().t(spec.tag).rm(true).forcerm(true).build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = progress.try_next().await.map_err(|source| Error::Docker {
        doing: "build image",
        object: image.clone(),
        source,
    })? {
        if let Some(detail) = step.error_detail.and_then(|detail| detail.message) {
            return Err(Error::Build { image, detail });
        }
    }
    // A build that ends without an error but without the tag would fail later, less clearly.
    if !exists(docker, spec.tag).await? {
        return Err(Error::Build { image, detail: "the build ended but the tag does not exist".to_owned() });
    }
    info!(image = spec.tag, busybox = %spec.busybox.display(), "built image");
    Ok(())
}

fn dockerfile(cmd: &[&str]) -> String {
    let cmd = serde_json::to_string(cmd).expect("a list of strings always serializes");
    format!("FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD {cmd}\n")
}

/// Checks that `binary` is an ELF executable without a dynamic loader (which `FROM scratch`
/// lacks: exec would fail with a baffling "no such file or directory").
fn check_static(binary: &[u8]) -> Result<(), &'static str> {
    if binary.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("it is not an ELF executable");
    }
    // Only 64-bit little-endian headers are read; other machines are trusted as they are.
    if binary.get(4..6) != Some([2u8, 1].as_slice()) {
        return Ok(());
    }
    let truncated = "its ELF header is truncated";
    let u16_at = |at: usize| binary.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let phoff = binary
        .get(0x20..0x28)
        .map(|b| u64::from_le_bytes(b.try_into().expect("an 8-byte slice converts to an 8-byte array")));
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, u16_at(0x36), u16_at(0x38)) else {
        return Err(truncated);
    };
    let phoff = usize::try_from(phoff).map_err(|_| truncated)?;
    for index in 0..usize::from(phnum) {
        let at = phoff.checked_add(index * usize::from(phentsize)).ok_or(truncated)?;
        let p_type = binary.get(at..at + 4).ok_or(truncated)?;
        if u32::from_le_bytes(p_type.try_into().expect("a 4-byte slice converts")) == PT_INTERP {
            return Err("it is dynamically linked");
        }
    }
    Ok(())
}

fn build_context(busybox: &[u8], applets: &[&str], dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: usize| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size as u64);
        header.set_mtime(0);
        header
    };
    let file = tar::EntryType::Regular;
    let dir = tar::EntryType::Directory;
    tar.append_data(&mut header(file, 0o644, dockerfile.len()), "Dockerfile", dockerfile.as_bytes())?;
    for (path, mode) in [("rootfs/", 0o755), ("rootfs/bin/", 0o755), ("rootfs/tmp/", 0o1777)] {
        tar.append_data(&mut header(dir, mode, 0), path, std::io::empty())?;
    }
    tar.append_data(&mut header(file, 0o755, busybox.len()), "rootfs/bin/busybox", busybox)?;
    for applet in applets.iter().filter(|a| **a != "busybox") {
        let mut link = header(tar::EntryType::Symlink, 0o777, 0);
        tar.append_link(&mut link, format!("rootfs/bin/{applet}"), "busybox")?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// A minimal 64-bit little-endian ELF header with one program header of type `p_type`.
    fn elf(p_type: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 0x40 + 0x38];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        bytes[0x40..0x44].copy_from_slice(&p_type.to_le_bytes());
        bytes
    }

    #[test]
    fn static_binaries_pass_and_others_are_named() {
        assert_eq!(check_static(&elf(1)), Ok(()));
        assert_eq!(check_static(&elf(PT_INTERP)), Err("it is dynamically linked"));
        assert_eq!(check_static(b"#!/bin/sh\n"), Err("it is not an ELF executable"));
        assert_eq!(check_static(&elf(1)[..0x30]), Err("its ELF header is truncated"));
        let mut far = elf(1);
        far[0x20..0x28].copy_from_slice(&0xffffu64.to_le_bytes());
        assert_eq!(check_static(&far), Err("its ELF header is truncated"));
    }

    #[test]
    fn the_dockerfile_runs_nothing_and_sets_the_command() {
        let text = dockerfile(&["/bin/busybox", "sleep", "2147483647"]);
        assert!(text.starts_with("FROM scratch\n"));
        assert!(text.contains("CMD [\"/bin/busybox\",\"sleep\",\"2147483647\"]"), "{text}");
        assert!(!text.contains("RUN"));
    }

    #[test]
    fn the_context_holds_busybox_and_its_applet_links() {
        let context = build_context(b"binary", &["sh", "busybox", "sleep"], "FROM scratch\n").expect("packs");
        let mut archive = tar::Archive::new(context.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("reads") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let link = entry.link_name().expect("link").map(|l| l.display().to_string());
            let mode = entry.header().mode().expect("mode");
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("body");
            seen.push((path, link, mode, body));
        }
        let find =
            |path: &str| seen.iter().find(|(p, ..)| p == path).unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(find("rootfs/bin/busybox").3, b"binary");
        assert_eq!(find("rootfs/bin/busybox").2, 0o755);
        assert_eq!(find("rootfs/bin/sh").1.as_deref(), Some("busybox"));
        assert_eq!(find("rootfs/bin/sleep").1.as_deref(), Some("busybox"));
        assert_eq!(find("rootfs/tmp/").2, 0o1777);
        assert_eq!(find("Dockerfile").3, b"FROM scratch\n");
        assert_eq!(seen.len(), 7, "Dockerfile, 3 dirs, busybox, 2 links: {seen:?}");
    }
}
