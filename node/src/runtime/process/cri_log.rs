//! The CRI log format the process runtime writes, and the pure functions that read it.
//!
//! One record per line: `<RFC 3339 timestamp, nanoseconds> <stdout|stderr> <F|P> <content>`.
//! `F` ends a line of output; `P` is a piece of a longer line (split at [`MAX_RECORD`]) whose
//! rest follows in later records. The timestamp is when the runtime read the bytes.

use k8s_openapi::jiff::Timestamp;

use crate::runtime::LogOptions;

/// The longest content of one record; longer lines are split into `P` records.
pub(crate) const MAX_RECORD: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed record, borrowing its content from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) time: Timestamp,
    pub(crate) stream: Stream,
    pub(crate) partial: bool,
    pub(crate) content: &'a [u8],
}

/// Formats a record, newline included.
pub(crate) fn format_record(time: Timestamp, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(time.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parses one record (without its newline); `None` for a line that is not one.
pub(crate) fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(Record { time, stream, partial, content: parts.next().unwrap_or_default() })
}

/// The complete lines at the start of `bytes` (a trailing piece without newline is left out),
/// and how many bytes they span.
pub(crate) fn complete_lines(bytes: &[u8]) -> (impl Iterator<Item = &[u8]>, usize) {
    let consumed = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..consumed].split(|b| *b == b'\n').filter(|l| !l.is_empty());
    (lines, consumed)
}

/// The records `options` asks for: those at or after `since`, then the last `tail_lines`.
pub(crate) fn select<'a, 'b>(records: &'b [Record<'a>], options: &LogOptions) -> &'b [Record<'a>] {
    let first = match options.since {
        // Records are appended in time order, so the matching ones form a suffix.
        Some(since) => records.partition_point(|r| r.time < since),
        None => 0,
    };
    let selected = &records[first..];
    match options.tail_lines {
        Some(tail) => {
            let keep = usize::try_from(tail).unwrap_or(usize::MAX).min(selected.len());
            &selected[selected.len() - keep..]
        }
        None => selected,
    }
}

/// What the reader of the log gets for a record: its content, a newline unless it is a
/// partial one, and with `timestamps` its time first.
pub(crate) fn render(record: &Record<'_>, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(record.time.to_string().as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(record.content);
    if !record.partial {
        out.push(b'\n');
    }
}

/// Cuts a byte stream into records: full lines, and pieces of lines longer than the limit.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter { pending: Vec::new(), max }
    }

    /// Adds bytes; returns the records they complete as `(partial, content)`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push((false, std::mem::take(&mut self.pending)));
            } else {
                self.pending.push(b);
                if self.pending.len() >= self.max {
                    out.push((true, std::mem::take(&mut self.pending)));
                }
            }
        }
        out
    }

    /// The last line when the stream ends without a newline.
    pub(crate) fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("test timestamps are valid")
    }

    #[test]
    fn formats_with_nanoseconds_and_parses_back() {
        let time = ts("2025-03-04T05:06:07.123456789Z");
        let line = format_record(time, Stream::Stderr, false, b"hello world");
        assert_eq!(line, b"2025-03-04T05:06:07.123456789Z stderr F hello world\n");
        let parsed = parse_record(&line[..line.len() - 1]).expect("parses");
        assert_eq!(parsed, Record { time, stream: Stream::Stderr, partial: false, content: b"hello world" });
    }

    #[test]
    fn parses_partial_and_empty_content() {
        let p = parse_record(b"2025-03-04T05:06:07Z stdout P abc").expect("parses");
        assert!(p.partial);
        assert_eq!(p.stream, Stream::Stdout);
        let empty = parse_record(b"2025-03-04T05:06:07Z stdout F ").expect("parses");
        assert_eq!(empty.content, b"");
    }

    #[test]
    fn rejects_lines_that_are_not_records() {
        assert_eq!(parse_record(b"garbage"), None);
        assert_eq!(parse_record(b"2025-03-04T05:06:07Z stdin F x"), None);
        assert_eq!(parse_record(b"2025-03-04T05:06:07Z stdout X x"), None);
        assert_eq!(parse_record(b"yesterday stdout F x"), None);
    }

    #[test]
    fn complete_lines_leave_a_trailing_piece() {
        let (lines, consumed) = complete_lines(b"a\nbb\ncc");
        assert_eq!(lines.collect::<Vec<_>>(), vec![&b"a"[..], b"bb"]);
        assert_eq!(consumed, 5);
        let (lines, consumed) = complete_lines(b"partial");
        assert_eq!((lines.count(), consumed), (0, 0));
    }

    fn records(times: &[&str]) -> Vec<Record<'static>> {
        times
            .iter()
            .map(|t| Record { time: ts(t), stream: Stream::Stdout, partial: false, content: b"x" })
            .collect()
    }

    #[test]
    fn select_applies_since_then_tail() {
        let all = records(&["2025-01-01T00:00:01Z", "2025-01-01T00:00:02Z", "2025-01-01T00:00:03Z"]);
        let since = LogOptions { since: Some(ts("2025-01-01T00:00:02Z")), ..LogOptions::default() };
        assert_eq!(select(&all, &since), &all[1..], "since is inclusive");
        let tail = LogOptions { tail_lines: Some(1), ..LogOptions::default() };
        assert_eq!(select(&all, &tail), &all[2..]);
        let both = LogOptions { tail_lines: Some(5), ..since.clone() };
        assert_eq!(select(&all, &both), &all[1..], "tail longer than the log keeps all");
        let zero = LogOptions { tail_lines: Some(0), ..LogOptions::default() };
        assert!(select(&all, &zero).is_empty());
        let late = LogOptions { since: Some(ts("2026-01-01T00:00:00Z")), ..LogOptions::default() };
        assert!(select(&all, &late).is_empty());
    }

    #[test]
    fn render_strips_or_keeps_timestamp_and_joins_partials() {
        let time = ts("2025-01-01T00:00:01.5Z");
        let mut out = Vec::new();
        render(&Record { time, stream: Stream::Stdout, partial: true, content: b"ab" }, false, &mut out);
        render(&Record { time, stream: Stream::Stdout, partial: false, content: b"c" }, false, &mut out);
        assert_eq!(out, b"abc\n");
        out.clear();
        render(&Record { time, stream: Stream::Stdout, partial: false, content: b"c" }, true, &mut out);
        assert_eq!(out, b"2025-01-01T00:00:01.5Z c\n");
    }

    #[test]
    fn splitter_cuts_lines_and_long_pieces() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.push(b"ab"), vec![]);
        assert_eq!(s.push(b"c\nabcdefg"), vec![(false, b"abc".to_vec()), (true, b"abcd".to_vec())]);
        assert_eq!(s.push(b"\n"), vec![(false, b"efg".to_vec())]);
        assert_eq!(s.push(b"tail"), vec![(true, b"tail".to_vec())]);
        assert_eq!(s.push(b"z"), vec![]);
        assert_eq!(s.finish(), Some(b"z".to_vec()));
        assert_eq!(s.finish(), None);
    }
}
