//! The in-memory file tree behind [`LossyFs`](super::LossyFs): what processes see now, and
//! what a disk would still hold if the power went out now.
//!
//! Durability follows POSIX at its strictest, which is what careful storage code must assume:
//! - a file's bytes and size survive a power loss only as of its last `fsync`/`fdatasync`;
//!   later writes may survive wholly, partly (the kernel wrote back some of them) or not at all;
//! - a directory's entries (creations, unlinks, renames, links into it) survive only as of its
//!   last `fsync` on the directory itself, or all together if the file system's journal
//!   happened to commit them (a coin toss per power loss).
//!
//! Every operation is a method returning an [`Errno`] the FUSE layer passes on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::ops::Range;
use std::time::SystemTime;

use fuser::Errno;
use rand::Rng;

use super::CrashReport;

/// An inode number.
pub(crate) type Ino = u64;
/// The root directory's inode number (the mount point).
pub(crate) const ROOT: Ino = 1;
/// The largest file (4 GiB): the tree lives in memory, so anything larger is refused with
/// `EFBIG` rather than allocated.
const MAX_FILE: usize = 1 << 32;

/// `end` as a file length, if it is within [`MAX_FILE`].
fn file_len(end: u64) -> Result<usize, Errno> {
    usize::try_from(end).ok().filter(|&len| len <= MAX_FILE).ok_or(Errno::EFBIG)
}

/// A regular file or a directory: nothing else can be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
}

/// What `stat` says about a node.
#[derive(Clone, Debug)]
pub(crate) struct Attr {
    pub(crate) ino: Ino,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) perm: u16,
    pub(crate) nlink: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
}

#[derive(Debug, Default)]
struct FileData {
    /// What readers see.
    data: Vec<u8>,
    /// What survives a power loss.
    durable: Vec<u8>,
    /// The hull of every byte range where `data` and `durable` may differ; outside it they
    /// are equal up to the shorter length.
    dirty: Option<Range<usize>>,
}

impl FileData {
    fn touch(&mut self, range: Range<usize>) {
        if range.is_empty() {
            return;
        }
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(range.start)..d.end.max(range.end),
            None => range,
        });
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let end = offset + bytes.len();
        if self.data.len() < end {
            let old = self.data.len();
            self.data.resize(end, 0);
            self.touch(old..end);
        }
        self.data[offset..end].copy_from_slice(bytes);
        self.touch(offset..end);
    }

    fn set_len(&mut self, len: usize) {
        let old = self.data.len();
        self.data.resize(len, 0);
        self.touch(old.min(len)..old.max(len));
    }

    fn sync(&mut self) {
        if let Some(d) = self.dirty.take() {
            self.durable.resize(self.data.len(), 0);
            let end = d.end.min(self.data.len());
            if d.start < end {
                self.durable[d.start..end].copy_from_slice(&self.data[d.start..end]);
            }
        }
    }
}

#[derive(Debug, Default)]
struct DirData {
    /// What readers see.
    entries: BTreeMap<OsString, Ino>,
    /// What survives a power loss.
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
enum Body {
    File(FileData),
    Dir(DirData),
}

#[derive(Debug)]
struct Node {
    body: Body,
    perm: u16,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    /// Entries naming it now (directories: 1 for their entry, however many subdirectories).
    nlink: u32,
    /// Open handles.
    open: u32,
}

impl Node {
    fn new(body: Body, perm: u16, uid: u32, gid: u32) -> Node {
        let now = SystemTime::now();
        Node { body, perm, uid, gid, mtime: now, ctime: now, nlink: 0, open: 0 }
    }

    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }
}

/// The tree: nodes by inode number and open handles.
#[derive(Debug)]
pub(crate) struct Tree {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    handles: HashMap<u64, Ino>,
    next_fh: u64,
}

impl Tree {
    /// An empty root directory owned by `uid`/`gid`.
    pub(crate) fn new(uid: u32, gid: u32) -> Tree {
        let mut root = Node::new(Body::Dir(DirData::default()), 0o755, uid, gid);
        root.nlink = 1;
        Tree { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1, handles: HashMap::new(), next_fh: 1 }
    }

    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&self, ino: Ino) -> Result<&DirData, Errno> {
        match &self.node(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirData, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::Dir(d) => Ok(d),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileData, Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => Ok(f),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    /// `stat` of `ino`.
    pub(crate) fn attr(&self, ino: Ino) -> Result<Attr, Errno> {
        let n = self.node(ino)?;
        let (size, nlink) = match &n.body {
            Body::File(f) => (f.data.len() as u64, n.nlink),
            Body::Dir(d) => {
                let subdirs =
                    d.entries.values().filter(|i| self.nodes.get(i).is_some_and(|c| c.kind() == Kind::Dir));
                (d.entries.len() as u64, 2 + subdirs.count() as u32)
            }
        };
        Ok(Attr {
            ino,
            kind: n.kind(),
            size,
            perm: n.perm,
            nlink,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            ctime: n.ctime,
        })
    }

    /// The entry `name` of directory `parent`.
    pub(crate) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr, Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        self.attr(ino)
    }

    /// Changes permissions, owner and size (truncating or extending with zeros).
    pub(crate) fn setattr(
        &mut self,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
    ) -> Result<Attr, Errno> {
        if let Some(size) = size {
            let len = file_len(size)?;
            self.file_mut(ino)?.set_len(len);
        }
        let n = self.node_mut(ino)?;
        if let Some(mode) = mode {
            n.perm = (mode & 0o7777) as u16;
        }
        n.uid = uid.unwrap_or(n.uid);
        n.gid = gid.unwrap_or(n.gid);
        n.ctime = SystemTime::now();
        if size.is_some() {
            n.mtime = n.ctime;
        }
        self.attr(ino)
    }

    /// Creates `name` in `parent` (a file or a directory); `EEXIST` if it is taken.
    pub(crate) fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Attr, Errno> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let body = match kind {
            Kind::File => Body::File(FileData::default()),
            Kind::Dir => Body::Dir(DirData::default()),
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut node = Node::new(body, perm, uid, gid);
        node.nlink = 1;
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.entries.insert(name.to_owned(), ino);
        self.changed(parent);
        self.attr(ino)
    }

    /// Removes the file entry `name` of `parent`.
    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Errno::EISDIR);
        }
        self.detach(parent, name, ino)
    }

    /// Removes the empty directory `name` of `parent`.
    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.detach(parent, name, ino)
    }

    fn detach(&mut self, parent: Ino, name: &OsStr, ino: Ino) -> Result<(), Errno> {
        self.dir_mut(parent)?.entries.remove(name);
        self.changed(parent);
        let n = self.node_mut(ino)?;
        n.nlink = n.nlink.saturating_sub(1);
        n.ctime = SystemTime::now();
        self.collect(vec![ino]);
        Ok(())
    }

    /// A hard link `newname` in `newparent` to file `ino`.
    pub(crate) fn link(&mut self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr, Errno> {
        if self.node(ino)?.kind() == Kind::Dir {
            return Err(Errno::EPERM);
        }
        if self.dir(newparent)?.entries.contains_key(newname) {
            return Err(Errno::EEXIST);
        }
        self.dir_mut(newparent)?.entries.insert(newname.to_owned(), ino);
        self.changed(newparent);
        let n = self.node_mut(ino)?;
        n.nlink += 1;
        n.ctime = SystemTime::now();
        self.attr(ino)
    }

    /// Renames `parent`/`name` to `newparent`/`newname`, replacing a file there, or an empty
    /// directory when the source is a directory too. `noreplace` refuses to replace anything.
    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.entries.get(name).ok_or(Errno::ENOENT)?;
        let kind = self.node(ino)?.kind();
        if kind == Kind::Dir && (ino == newparent || self.contains(ino, newparent)) {
            return Err(Errno::EINVAL);
        }
        let replaced = self.dir(newparent)?.entries.get(newname).copied();
        if let Some(old) = replaced {
            if old == ino {
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            match (kind, self.node(old)?.kind()) {
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Kind::Dir) if !self.dir(old)?.entries.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.dir_mut(parent)?.entries.remove(name);
        self.dir_mut(newparent)?.entries.insert(newname.to_owned(), ino);
        self.changed(parent);
        self.changed(newparent);
        if let Some(old) = replaced {
            let n = self.node_mut(old)?;
            n.nlink = n.nlink.saturating_sub(1);
            self.collect(vec![old]);
        }
        Ok(())
    }

    /// Whether directory `dir`'s subtree holds `ino`.
    fn contains(&self, dir: Ino, ino: Ino) -> bool {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if let Ok(data) = self.dir(d) {
                for &child in data.entries.values() {
                    if child == ino {
                        return true;
                    }
                    stack.push(child);
                }
            }
        }
        false
    }

    /// The entries of directory `ino` (without `.` and `..`).
    pub(crate) fn entries(&self, ino: Ino) -> Result<Vec<(Ino, Kind, OsString)>, Errno> {
        let dir = self.dir(ino)?;
        Ok(dir
            .entries
            .iter()
            .filter_map(|(name, &i)| self.nodes.get(&i).map(|n| (i, n.kind(), name.clone())))
            .collect())
    }

    /// Opens `ino` (a file or a directory); `truncate` empties a file.
    pub(crate) fn open(&mut self, ino: Ino, truncate: bool) -> Result<u64, Errno> {
        if truncate {
            self.file_mut(ino)?.set_len(0);
        }
        self.node_mut(ino)?.open += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        Ok(fh)
    }

    /// Closes handle `fh`.
    pub(crate) fn release(&mut self, fh: u64) {
        if let Some(ino) = self.handles.remove(&fh)
            && let Some(n) = self.nodes.get_mut(&ino)
        {
            n.open = n.open.saturating_sub(1);
            self.collect(vec![ino]);
        }
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    pub(crate) fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<&[u8], Errno> {
        let data = match &self.node(ino)?.body {
            Body::File(f) => &f.data,
            Body::Dir(_) => return Err(Errno::EISDIR),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
        let end = start.saturating_add(size as usize).min(data.len());
        Ok(&data[start..end])
    }

    /// Writes `bytes` at `offset` of file `ino`, or at its end when `append`.
    pub(crate) fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8], append: bool) -> Result<u32, Errno> {
        let written = u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)?;
        let file = self.file_mut(ino)?;
        let offset = if append { file.data.len() } else { file_len(offset)? };
        file_len(offset as u64 + bytes.len() as u64)?;
        file.write(offset, bytes);
        let n = self.node_mut(ino)?;
        n.mtime = SystemTime::now();
        n.ctime = n.mtime;
        Ok(written)
    }

    /// `fallocate`: with `keep_size` nothing changes; otherwise the file grows with zeros to
    /// `offset + length` if it is shorter.
    pub(crate) fn fallocate(
        &mut self,
        ino: Ino,
        offset: u64,
        length: u64,
        keep_size: bool,
    ) -> Result<(), Errno> {
        let file = self.file_mut(ino)?;
        if keep_size {
            return Ok(());
        }
        let end = file_len(offset.checked_add(length).ok_or(Errno::EFBIG)?)?;
        if file.data.len() < end {
            file.set_len(end);
        }
        Ok(())
    }

    /// `fsync` of file `ino`: its bytes and size as they are now survive a power loss.
    pub(crate) fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        match &mut self.node_mut(ino)?.body {
            Body::File(f) => f.sync(),
            Body::Dir(_) => return self.fsyncdir(ino),
        }
        Ok(())
    }

    /// `fsync` of directory `ino`: its entries as they are now survive a power loss.
    pub(crate) fn fsyncdir(&mut self, ino: Ino) -> Result<(), Errno> {
        let dir = self.dir_mut(ino)?;
        let dropped: Vec<Ino> =
            dir.durable.values().filter(|i| !dir.entries.values().any(|e| e == *i)).copied().collect();
        dir.durable = dir.entries.clone();
        self.collect(dropped);
        Ok(())
    }

    fn changed(&mut self, dir: Ino) {
        if let Some(n) = self.nodes.get_mut(&dir) {
            n.mtime = SystemTime::now();
            n.ctime = n.mtime;
        }
    }

    /// Frees the nodes of `candidates` (and what only their durable entries held) that
    /// nothing names now, nothing has open, and no durable entry names.
    fn collect(&mut self, mut candidates: Vec<Ino>) {
        while let Some(ino) = candidates.pop() {
            let Some(n) = self.nodes.get(&ino) else { continue };
            if ino == ROOT || n.nlink > 0 || n.open > 0 {
                continue;
            }
            let durably_named = self.nodes.values().any(|other| match &other.body {
                Body::Dir(d) => d.durable.values().any(|&i| i == ino),
                Body::File(_) => false,
            });
            if durably_named {
                continue;
            }
            if let Some(Node { body: Body::Dir(d), .. }) = self.nodes.remove(&ino) {
                candidates.extend(d.durable.values().chain(d.entries.values()));
            }
        }
    }

    /// The power goes out: every open handle is gone, and each file and directory keeps only
    /// what a disk would (see the module documentation), chosen at random by `rng`.
    pub(crate) fn power_loss(&mut self, rng: &mut impl Rng) -> CrashReport {
        let mut report = CrashReport { metadata_committed: rng.random_bool(0.5), ..CrashReport::default() };
        self.handles.clear();
        let mut inos: Vec<Ino> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let Some(node) = self.nodes.get_mut(&ino) else { continue };
            node.open = 0;
            match &mut node.body {
                Body::Dir(d) if report.metadata_committed => d.durable = d.entries.clone(),
                Body::Dir(d) => d.entries = d.durable.clone(),
                Body::File(f) => {
                    let Some(dirty) = f.dirty.take() else { continue };
                    let longest = f.data.len().max(f.durable.len());
                    let changed = dirty.end.min(longest).saturating_sub(dirty.start) as u64;
                    match rng.random_range(0..3) {
                        0 => {
                            report.files_reverted += 1;
                            report.bytes_lost += changed;
                            f.data = f.durable.clone();
                        }
                        1 => {
                            report.files_kept += 1;
                            f.durable = f.data.clone();
                        }
                        _ => {
                            // The kernel had written back the changed bytes below `cut`.
                            report.files_torn += 1;
                            let start = dirty.start.min(f.data.len());
                            let cut = rng.random_range(start..=dirty.end.min(f.data.len()));
                            let mut kept = std::mem::take(&mut f.durable);
                            kept.resize(kept.len().max(cut), 0);
                            kept[start..cut].copy_from_slice(&f.data[start..cut]);
                            report.bytes_lost += changed.saturating_sub((cut - start) as u64);
                            f.data = kept.clone();
                            f.durable = kept;
                        }
                    }
                }
            }
        }
        report.nodes_lost = self.keep_reachable();
        report
    }

    /// Drops the nodes no entry reaches from the root and recounts links; answers how many
    /// were dropped.
    fn keep_reachable(&mut self) -> usize {
        let mut links: HashMap<Ino, u32> = HashMap::from([(ROOT, 1)]);
        let mut seen = HashSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            let Ok(dir) = self.dir(d) else { continue };
            for &child in dir.entries.values() {
                *links.entry(child).or_default() += 1;
                if seen.insert(child) {
                    stack.push(child);
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| seen.contains(ino));
        for (ino, n) in &mut self.nodes {
            n.nlink = links.get(ino).copied().unwrap_or(0);
        }
        before - self.nodes.len()
    }

    /// How many nodes the tree holds (for tests: freed nodes are gone).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}
