//! Moving log bytes: the pump that turns what a process writes to its FIFOs into CRI records
//! in the container's log file, and the reader behind `logs()` (with `follow`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cri_log::{self, LineSplitter, MAX_RECORD, Stream};
use super::state::io_error;
use crate::runtime::{LogOptions, Result};

/// How often a following reader looks for new records in the log file.
pub(crate) const FOLLOW_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How much the pump reads from a FIFO at once.
const READ_CHUNK: usize = 8 * 1024;

/// Opens the runtime's end of a container's FIFO. Opening never blocks (non-blocking mode);
/// reads end when every writer (the process and its children) has closed it.
pub(crate) fn open_fifo_reader(path: &Path) -> Result<pipe::Receiver> {
    pipe::OpenOptions::new().open_receiver(path).map_err(|e| io_error("opening log fifo", path, e))
}

/// Copies a container's stdout and stderr into its log file until both end or `cancel`
/// fires, then sets `done`.
pub(crate) async fn pump(
    container: String,
    mut stdout: pipe::Receiver,
    mut stderr: pipe::Receiver,
    log_path: PathBuf,
    cancel: CancellationToken,
    done: watch::Sender<bool>,
) {
    let result = async {
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
            .map_err(|e| io_error("opening", &log_path, e))?;
        let (mut out_lines, mut err_lines) = (LineSplitter::new(MAX_RECORD), LineSplitter::new(MAX_RECORD));
        let (mut out_buf, mut err_buf) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let (stream, read, buf, lines, open) = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                r = stdout.read(&mut out_buf), if out_open =>
                    (Stream::Stdout, r, &out_buf, &mut out_lines, &mut out_open),
                r = stderr.read(&mut err_buf), if err_open =>
                    (Stream::Stderr, r, &err_buf, &mut err_lines, &mut err_open),
            };
            let time = Timestamp::now();
            let records = match read {
                Ok(0) | Err(_) => {
                    *open = false;
                    lines.finish().map(|last| (false, last)).into_iter().collect()
                }
                Ok(n) => lines.push(&buf[..n]),
            };
            let mut bytes = Vec::new();
            for (partial, content) in records {
                bytes.extend(cri_log::format_record(time, stream, partial, &content));
            }
            if !bytes.is_empty() {
                // Flushed at once: tokio's file writes in the background otherwise, and
                // readers (and `done`) must see what was written.
                let append = async {
                    log.write_all(&bytes).await?;
                    log.flush().await
                };
                append.await.map_err(|e| io_error("appending to", &log_path, e))?;
            }
        }
        Ok::<_, crate::runtime::Error>(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%container, %error, "log capture stopped");
    }
    done.send_replace(true);
}

/// Reads a container's log as `options` asks. With `follow`, the stream goes on until `done`
/// is set (or its sender dropped) and everything written before is delivered.
pub(crate) fn read(
    log_path: &Path,
    options: &LogOptions,
    done: watch::Receiver<bool>,
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let bytes = match std::fs::read(log_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_error("reading", log_path, e)),
    };
    let (lines, consumed) = cri_log::complete_lines(&bytes);
    let records: Vec<_> = lines.filter_map(cri_log::parse_record).collect();
    let mut first = Vec::new();
    for record in cri_log::select(&records, options) {
        cri_log::render(record, options.timestamps, &mut first);
    }
    let first = futures::stream::iter((!first.is_empty()).then(|| Ok(Bytes::from(first))));
    if !options.follow {
        return Ok(first.boxed());
    }
    let follower = Follower {
        path: log_path.to_path_buf(),
        offset: consumed as u64,
        since: options.since,
        timestamps: options.timestamps,
        done,
    };
    let rest = futures::stream::unfold(Some(follower), |state| async move {
        let mut follower = state?;
        match follower.next().await {
            Ok(Some(bytes)) => Some((Ok(bytes), Some(follower))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok(first.chain(rest).boxed())
}

/// The state of a following reader.
struct Follower {
    path: PathBuf,
    offset: u64,
    since: Option<Timestamp>,
    timestamps: bool,
    done: watch::Receiver<bool>,
}

impl Follower {
    /// The next rendered records, or `None` once the log is complete.
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            // Looked at before reading: whatever the pump wrote before it finished is then
            // in this read.
            let closed = *self.done.borrow() || self.done.has_changed().is_err();
            let out = self.read_new()?;
            if !out.is_empty() {
                return Ok(Some(Bytes::from(out)));
            }
            if closed {
                return Ok(None);
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_POLL_INTERVAL) => {}
                _ = self.done.changed() => {}
            }
        }
    }

    fn read_new(&mut self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let read = |bytes: &mut Vec<u8>| -> std::io::Result<()> {
            let mut file = std::fs::File::open(&self.path)?;
            file.seek(SeekFrom::Start(self.offset))?;
            file.read_to_end(bytes)?;
            Ok(())
        };
        match read(&mut bytes) {
            Ok(()) => {}
            // Not started yet, or removed: nothing (more) to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &self.path, e)),
        }
        let (lines, consumed) = cri_log::complete_lines(&bytes);
        let mut out = Vec::new();
        for record in lines.filter_map(cri_log::parse_record) {
            if self.since.is_none_or(|since| record.time >= since) {
                cri_log::render(&record, self.timestamps, &mut out);
            }
        }
        self.offset += consumed as u64;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    async fn collect(stream: BoxStream<'static, Result<Bytes>>) -> String {
        let chunks: Vec<_> = stream.collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
        String::from_utf8(bytes).expect("utf-8")
    }

    fn log_with(lines: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("container.log");
        std::fs::write(&path, lines).expect("write log");
        (dir, path)
    }

    const LOG: &str = "2025-01-01T00:00:01Z stdout F one\n\
                       2025-01-01T00:00:02Z stderr P tw\n\
                       2025-01-01T00:00:02Z stderr F o\n\
                       2025-01-01T00:00:03Z stdout F three\n\
                       2025-01-01T00:00:04Z stdout F unfinis";

    #[tokio::test]
    async fn read_renders_complete_selected_records() {
        tokio::time::timeout(TIMEOUT, async {
            let (_dir, path) = log_with(LOG);
            let (_tx, done) = watch::channel(true);
            let all = read(&path, &LogOptions::default(), done.clone()).expect("read");
            assert_eq!(collect(all).await, "one\ntwo\nthree\n", "the unfinished record is left out");
            let options = LogOptions { tail_lines: Some(1), timestamps: true, ..LogOptions::default() };
            let tail = read(&path, &options, done.clone()).expect("read");
            assert_eq!(collect(tail).await, "2025-01-01T00:00:03Z three\n");
            let missing = read(&path.with_extension("none"), &LogOptions::default(), done).expect("read");
            assert_eq!(collect(missing).await, "");
        })
        .await
        .expect("reading a log file got stuck");
    }

    #[tokio::test(start_paused = true)]
    async fn follow_delivers_appended_records_until_done() {
        tokio::time::timeout(TIMEOUT, async {
            let (_dir, path) = log_with("2025-01-01T00:00:01Z stdout F old\n");
            let (tx, done) = watch::channel(false);
            let since = "2025-01-01T00:00:02Z".parse().expect("timestamp");
            let options = LogOptions { follow: true, since: Some(since), ..LogOptions::default() };
            let mut stream = read(&path, &options, done).expect("read");
            let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
            file.write_all(b"2025-01-01T00:00:01Z stdout F too old\n2025-01-01T00:00:03Z stdout F new\n")
                .expect("append");
            let chunk = stream.next().await.expect("a chunk").expect("ok");
            assert_eq!(&chunk[..], b"new\n");
            file.write_all(b"2025-01-01T00:00:04Z stdout F last\n").expect("append");
            tx.send_replace(true);
            assert_eq!(collect(stream).await, "last\n", "what was written before done is delivered");
        })
        .await
        .expect("following a log file got stuck");
    }

    #[tokio::test]
    async fn pump_turns_fifo_output_into_records() {
        tokio::time::timeout(TIMEOUT, async {
            let dir = tempfile::tempdir().expect("tempdir");
            let fifo = |name: &str| {
                let path = dir.path().join(name);
                nix::unistd::mkfifo(path.as_path(), nix::sys::stat::Mode::from_bits_truncate(0o600))
                    .expect("mkfifo");
                let writer =
                    std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open writer");
                (writer, open_fifo_reader(&path).expect("open reader"))
            };
            let (mut out_w, out_r) = fifo("stdout");
            let (mut err_w, err_r) = fifo("stderr");
            let log = dir.path().join("container.log");
            let (tx, mut done) = watch::channel(false);
            let task =
                tokio::spawn(pump("c".into(), out_r, err_r, log.clone(), CancellationToken::new(), tx));
            out_w.write_all(b"hello\nwor").expect("write");
            err_w.write_all(b"bad\n").expect("write");
            out_w.write_all(b"ld").expect("write");
            drop((out_w, err_w));
            task.await.expect("pump ends when the writers are gone");
            assert!(*done.borrow_and_update());
            let text = std::fs::read_to_string(&log).expect("log");
            let mut records: Vec<_> = text.lines().map(|l| l.split_once(' ').expect("record").1).collect();
            records.sort();
            assert_eq!(records, vec!["stderr F bad", "stdout F hello", "stdout F world"]);
        })
        .await
        .expect("the log pump got stuck");
    }
}
