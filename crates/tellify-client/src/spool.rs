//! The disk spool: events the server could not take yet, kept in order until a replay
//! delivers them.
//!
//! A spool is a directory:
//!
//! - `events-NNNNNNNNNNNNNNNN.ndjson` — the segment: one event per line, as the JSON sent
//!   to `POST /api/v1/events`, each with its idempotency key. Only ever appended to, and
//!   fsynced after each append, so an event the caller was told is spooled survives a
//!   crash of the process or of the machine.
//! - `replayed` — `{"segment": N, "offset": BYTES}`: how far the server has acknowledged.
//!   Rewritten after each acknowledged batch through a temporary file, fsync and rename,
//!   so it is always either the old or the new value, never a torn one.
//! - `lock` — held with `flock` by the process that owns the spool (its pid inside);
//!   the kernel releases it when that process dies, `kill -9` included.
//! - `rejected.ndjson` — events the server refused during a replay (4xx), with the reason:
//!   kept for a person to look at, never silently dropped.
//!
//! After a crash, at most the batch that was in flight when it happened is sent again,
//! and the server drops it by idempotency key. A crash in the middle of an append can
//! leave a torn last line: it was never acknowledged, so opening the spool cuts it off.
//! When everything is replayed the segment is replaced by an empty one with the next
//! number (the offset file moves first, then the old segment is deleted), so compaction
//! is crash-safe too.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

const LOCK_FILE: &str = "lock";
const OFFSET_FILE: &str = "replayed";
const OFFSET_TEMP_FILE: &str = "replayed.tmp";
const REJECTED_FILE: &str = "rejected.ndjson";
const SEGMENT_PREFIX: &str = "events-";
const SEGMENT_SUFFIX: &str = ".ndjson";

/// What a spool holds, for `tellify spool status` and monitoring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolStatus {
    pub dir: PathBuf,
    /// Events not yet acknowledged by the server.
    pub pending_events: u64,
    /// Bytes those events take in the segment.
    pub pending_bytes: u64,
    /// The `time` of the oldest pending event.
    pub oldest: Option<jiff::Timestamp>,
    /// Events the server refused during replays, kept in `rejected.ndjson`.
    pub rejected_events: u64,
}

/// One batch read for a replay: the NDJSON body as stored, and where it ends.
pub(crate) struct ReplayBatch {
    pub body: Vec<u8>,
    pub events: usize,
    /// The segment the batch was read from, and the byte offset just after its last line.
    pub segment: u64,
    pub end: u64,
}

/// An open, locked spool.
pub(crate) struct Spool {
    dir: PathBuf,
    /// Held for the `flock`; dropping it releases the spool.
    _lock: File,
    segment: u64,
    file: File,
    /// Bytes of complete records in the segment.
    len: u64,
    /// Bytes acknowledged by the server.
    offset: u64,
    /// Records after `offset`.
    pending: u64,
    max_bytes: u64,
    /// The segment the last compaction replaced and by how many bytes it moved the
    /// records, so a batch read before it can still be acknowledged.
    moved: Option<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct Offset {
    segment: u64,
    offset: u64,
}

/// Only the `time` of a stored event, for [`SpoolStatus::oldest`].
#[derive(Deserialize)]
struct TimeOnly {
    #[serde(default)]
    time: Option<jiff::Timestamp>,
}

impl Spool {
    /// Opens (creating if needed) and locks the spool in `dir`, and recovers from a crash:
    /// leftovers of a compaction are removed and a torn last line is cut off.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock(dir)?;
        let (segment, offset) = match read_offset(dir)? {
            Some(stored) => (stored.segment, stored.offset),
            // No compaction has finished yet: the oldest segment is the live one.
            None => (segments(dir)?.first().copied().unwrap_or(1), 0),
        };
        for other in segments(dir)? {
            if other != segment {
                let path = segment_path(dir, other);
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let scan = scan(&file, &path, offset)?;
        if scan.valid_end < scan.file_len {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = scan.file_len - scan.valid_end,
                "cutting off a torn last record (an append that never finished)"
            );
            file.set_len(scan.valid_end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
        sync_dir(dir)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            _lock: lock,
            segment,
            file,
            len: scan.valid_end,
            offset,
            pending: scan.records,
            max_bytes,
            moved: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends encoded records (each ending in `\n`) and fsyncs them; all or nothing.
    pub fn append(&mut self, records: &[u8], count: usize) -> Result<(), Error> {
        if self.len + records.len() as u64 > self.max_bytes && self.offset > 0 {
            // Replayed records still take room at the start of the segment.
            self.compact()?;
        }
        if self.len + records.len() as u64 > self.max_bytes {
            return Err(Error::SpoolFull {
                dir: self.dir.clone(),
                limit: self.max_bytes,
                used: self.len - self.offset,
                needed: records.len() as u64,
            });
        }
        let path = self.segment_path();
        let written = self
            .file
            .write_all(records)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Leave no half-written batch behind for the next record to be glued onto.
            let _ = self.file.set_len(self.len);
            return Err(Error::io(path, error));
        }
        self.len += records.len() as u64;
        self.pending += count as u64;
        Ok(())
    }

    /// Byte offset the server has acknowledged up to.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the records starting at byte `from` (the acknowledged offset, or the end of
    /// a batch in flight): at most `max_events`, and at most `max_bytes` unless a single
    /// record is larger (it is then sent alone).
    pub fn next_batch(
        &self,
        from: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<ReplayBatch>, Error> {
        if from < self.offset || from > self.len {
            return Err(Error::SpoolDamaged {
                path: self.segment_path(),
                message: format!(
                    "a replay asked for offset {from}, outside {}..{}",
                    self.offset, self.len
                ),
            });
        }
        let remaining = self.len - from;
        if remaining == 0 {
            return Ok(None);
        }
        let wanted = remaining.min(max_bytes.max(1) as u64) as usize;
        let mut body = self.read_at(from, wanted)?;
        let mut events = 0usize;
        let mut end = 0usize;
        for (index, byte) in body.iter().enumerate() {
            if *byte == b'\n' {
                events += 1;
                end = index + 1;
                if events == max_events.max(1) {
                    break;
                }
            }
        }
        if events == 0 {
            // One record longer than `max_bytes`: read it whole.
            body = self.read_at(from, remaining as usize)?;
            end = body
                .iter()
                .position(|byte| *byte == b'\n')
                .map(|index| index + 1)
                .ok_or_else(|| Error::SpoolDamaged {
                    path: self.segment_path(),
                    message: "the last record has no line end".to_string(),
                })?;
            events = 1;
        }
        body.truncate(end);
        Ok(Some(ReplayBatch {
            body,
            events,
            segment: self.segment,
            end: from + end as u64,
        }))
    }

    /// Records that the server holds everything up to `end`; compacts once nothing is
    /// pending.
    pub fn acknowledge(&mut self, batch: &ReplayBatch) -> Result<(), Error> {
        let end = match self.moved {
            _ if batch.segment == self.segment => batch.end,
            Some((segment, shift)) if segment == batch.segment && batch.end >= shift => {
                batch.end - shift
            }
            _ => {
                return Err(Error::SpoolDamaged {
                    path: self.segment_path(),
                    message: format!(
                        "an acknowledged batch of segment {} is unknown",
                        batch.segment
                    ),
                })
            }
        };
        let events = batch.events;
        write_offset(&self.dir, self.segment, end)?;
        self.offset = end;
        self.pending = self.pending.saturating_sub(events as u64);
        if self.offset == self.len {
            self.compact()?;
        }
        Ok(())
    }

    /// Keeps a record the server refused in `rejected.ndjson`, with the reason.
    pub fn reject(&self, record: &[u8], reason: &str) -> Result<(), Error> {
        let event: serde_json::Value =
            serde_json::from_slice(record).unwrap_or(serde_json::Value::Null);
        let entry = serde_json::json!({
            "rejected_at": jiff::Timestamp::now().to_string(),
            "reason": reason,
            "event": event,
        });
        let mut line = entry.to_string().into_bytes();
        line.push(b'\n');
        let path = self.dir.join(REJECTED_FILE);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(&line)?;
                file.sync_data()
            })
            .map_err(|e| Error::io(&path, e))
    }

    pub fn status(&self) -> Result<SpoolStatus, Error> {
        let oldest = if self.pending > 0 {
            oldest_time(&self.file, &self.segment_path(), self.offset)?
        } else {
            None
        };
        Ok(SpoolStatus {
            dir: self.dir.clone(),
            pending_events: self.pending,
            pending_bytes: self.len - self.offset,
            oldest,
            rejected_events: count_lines(&self.dir.join(REJECTED_FILE))?,
        })
    }

    /// Moves what is still pending into a new segment and forgets the old one. The
    /// new segment is durable before the offset file points at it, and the old one is
    /// deleted only after that, so a crash at any step leaves one consistent spool.
    fn compact(&mut self) -> Result<(), Error> {
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        let tail = self.read_at(self.offset, (self.len - self.offset) as usize)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut file| {
                file.set_len(0)?;
                file.write_all(&tail)?;
                file.sync_all()?;
                Ok(file)
            })
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.dir)?;
        write_offset(&self.dir, next, 0)?;
        sync_dir(&self.dir)?;
        let old = self.segment_path();
        std::fs::remove_file(&old).map_err(|e| Error::io(&old, e))?;
        self.moved = Some((self.segment, self.offset));
        self.segment = next;
        self.file = file;
        self.len = tail.len() as u64;
        self.offset = 0;
        Ok(())
    }

    fn segment_path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }

    fn read_at(&self, offset: u64, length: usize) -> Result<Vec<u8>, Error> {
        let mut buffer = vec![0u8; length];
        self.file
            .read_exact_at(&mut buffer, offset)
            .map_err(|e| Error::io(self.segment_path(), e))?;
        Ok(buffer)
    }
}

/// Reads a spool's status without taking its lock, so a running producer's spool can be
/// inspected; a record being appended at that moment is not counted yet.
pub fn read_status(dir: &Path) -> Result<SpoolStatus, Error> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such spool directory"),
        ));
    }
    let (segment, offset) = match read_offset(dir)? {
        Some(stored) => (stored.segment, stored.offset),
        None => (segments(dir)?.first().copied().unwrap_or(1), 0),
    };
    let path = segment_path(dir, segment);
    let rejected_events = count_lines(&dir.join(REJECTED_FILE))?;
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SpoolStatus {
                dir: dir.to_path_buf(),
                pending_events: 0,
                pending_bytes: 0,
                oldest: None,
                rejected_events,
            })
        }
        Err(error) => return Err(Error::io(&path, error)),
    };
    let scan = scan(&file, &path, offset)?;
    let oldest = if scan.records > 0 {
        oldest_time(&file, &path, offset)?
    } else {
        None
    };
    Ok(SpoolStatus {
        dir: dir.to_path_buf(),
        pending_events: scan.records,
        pending_bytes: scan.valid_end - offset,
        oldest,
        rejected_events,
    })
}

fn lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(Error::SpoolBusy {
                dir: dir.to_path_buf(),
                holder: text.trim().parse().ok(),
            });
        }
        Err(errno) => return Err(Error::io(&path, errno.into())),
    }
    let pid = std::process::id().to_string();
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{segment:016}{SEGMENT_SUFFIX}"))
}

/// Segment numbers present in `dir`, lowest first.
fn segments(dir: &Path) -> Result<Vec<u64>, Error> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let number = name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|rest| rest.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(number) = number {
            found.push(number);
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn read_offset(dir: &Path) -> Result<Option<Offset>, Error> {
    let path = dir.join(OFFSET_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(&path, error)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| Error::SpoolDamaged {
            path,
            message: format!("not a replay offset: {error}"),
        })
}

/// Writes the offset file atomically: the new contents are on disk before the rename
/// makes them the offset. The directory is not fsynced here: if a crash loses the
/// rename, the older offset makes a replay send one batch again, which the server drops
/// by idempotency key.
fn write_offset(dir: &Path, segment: u64, offset: u64) -> Result<(), Error> {
    let temporary = dir.join(OFFSET_TEMP_FILE);
    let text = serde_json::to_string(&Offset { segment, offset }).map_err(|error| {
        Error::SpoolDamaged {
            path: temporary.clone(),
            message: error.to_string(),
        }
    })?;
    File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .map_err(|e| Error::io(&temporary, e))?;
    let path = dir.join(OFFSET_FILE);
    std::fs::rename(&temporary, &path).map_err(|e| Error::io(&path, e))
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(|e| Error::io(dir, e))
}

struct Scan {
    file_len: u64,
    /// End of the last complete, well-formed record.
    valid_end: u64,
    /// Complete records after the offset.
    records: u64,
}

/// Walks the records after `offset`. Appends are fsynced before they are acknowledged,
/// so only the last, unacknowledged append can be damaged: everything from the first
/// record without a line end or not a JSON object on is that torn append.
fn scan(file: &File, path: &Path, offset: u64) -> Result<Scan, Error> {
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if offset > file_len {
        return Err(Error::SpoolDamaged {
            path: path.to_path_buf(),
            message: format!(
                "the replay offset {offset} lies beyond the end of the file ({file_len} bytes)"
            ),
        });
    }
    if offset > 0 {
        let mut before = [0u8; 1];
        file.read_exact_at(&mut before, offset - 1)
            .map_err(|e| Error::io(path, e))?;
        if before[0] != b'\n' {
            return Err(Error::SpoolDamaged {
                path: path.to_path_buf(),
                message: format!("the replay offset {offset} is not at the start of a record"),
            });
        }
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut valid_end = offset;
    let mut records = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 || !is_record(&line) {
            break;
        }
        valid_end += read as u64;
        records += 1;
    }
    Ok(Scan {
        file_len,
        valid_end,
        records,
    })
}

/// A complete record: a JSON object followed by a line end.
fn is_record(line: &[u8]) -> bool {
    let Some(content) = line.strip_suffix(b"\n") else {
        return false;
    };
    content.first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(content).is_ok()
}

fn oldest_time(file: &File, path: &Path, offset: u64) -> Result<Option<jiff::Timestamp>, Error> {
    let mut reader = BufReader::new(file);
    reader
        .seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io(path, e))?;
    let mut line = Vec::new();
    reader
        .read_until(b'\n', &mut line)
        .map_err(|e| Error::io(path, e))?;
    Ok(serde_json::from_slice::<TimeOnly>(&line)
        .ok()
        .and_then(|record| record.time))
}

fn count_lines(path: &Path) -> Result<u64, Error> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(Error::io(path, error)),
    };
    let mut count = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            return Ok(count);
        }
        if line.ends_with(b"\n") {
            count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(range: std::ops::Range<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        for n in range {
            out.extend_from_slice(
                format!(
                    "{{\"time\":\"2026-01-02T03:04:{:02}Z\",\"idempotency_key\":\"k{n}\",\"fields\":{{\"n\":{n}}}}}\n",
                    n % 60
                )
                .as_bytes(),
            );
        }
        out
    }

    fn lines_of(body: &[u8]) -> Vec<String> {
        String::from_utf8(body.to_vec())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn records_are_one_json_line_each_and_come_back_in_order_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&records(0..5), 5).unwrap();
        spool.append(&records(5..7), 2).unwrap();
        let segment = std::fs::read(spool.segment_path()).unwrap();
        assert_eq!(segment, records(0..7), "the file is the records, verbatim");

        let first = spool
            .next_batch(spool.offset(), 3, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(first.events, 3);
        assert_eq!(lines_of(&first.body), lines_of(&records(0..3)));
        spool.acknowledge(&first).unwrap();
        let second = spool
            .next_batch(spool.offset(), 3, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(lines_of(&second.body), lines_of(&records(3..6)));
        let status = spool.status().unwrap();
        assert_eq!(status.pending_events, 4);
        assert_eq!(status.pending_bytes, records(3..7).len() as u64);
        assert_eq!(
            status.oldest.unwrap().to_string(),
            "2026-01-02T03:04:03Z",
            "the oldest pending event, not the oldest ever"
        );
    }

    #[test]
    fn a_batch_stops_at_the_byte_limit_but_takes_one_oversized_record_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&records(0..4), 4).unwrap();
        let one = records(0..1).len();
        let batch = spool
            .next_batch(spool.offset(), 100, one * 2 + 1)
            .unwrap()
            .unwrap();
        assert_eq!(batch.events, 2);
        let tiny = spool.next_batch(spool.offset(), 100, 5).unwrap().unwrap();
        assert_eq!(tiny.events, 1);
        assert_eq!(tiny.body, records(0..1));
    }

    #[test]
    fn reopening_resumes_after_the_acknowledged_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&records(0..10), 10).unwrap();
            let batch = spool
                .next_batch(spool.offset(), 4, 1 << 20)
                .unwrap()
                .unwrap();
            spool.acknowledge(&batch).unwrap();
            // Read but never acknowledged: the crash came while it was in flight.
            let _in_flight = spool
                .next_batch(spool.offset(), 4, 1 << 20)
                .unwrap()
                .unwrap();
        }
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.pending(), 6);
        let batch = spool
            .next_batch(spool.offset(), 100, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(lines_of(&batch.body), lines_of(&records(4..10)));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&records(0..3), 3).unwrap();
            path = spool.segment_path();
        }
        // A crash in the middle of the next append: half a record, no line end.
        let torn = records(3..4);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
        drop(file);
        assert_eq!(read_status(dir.path()).unwrap().pending_events, 3);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.pending(), 3);
        assert_eq!(std::fs::read(&path).unwrap(), records(0..3));
        spool.append(&records(4..5), 1).unwrap();
        let batch = spool
            .next_batch(spool.offset(), 100, 1 << 20)
            .unwrap()
            .unwrap();
        let mut expected = records(0..3);
        expected.extend_from_slice(&records(4..5));
        assert_eq!(batch.body, expected);
    }

    #[test]
    fn a_damaged_line_and_everything_after_it_is_the_torn_append() {
        let dir = tempfile::tempdir().unwrap();
        let path;
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&records(0..2), 2).unwrap();
            path = spool.segment_path();
        }
        // Unsynced pages of the last append may read back as zeros after a power loss.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"\0\0\0\0\n").unwrap();
        file.write_all(&records(2..3)).unwrap();
        drop(file);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.pending(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), records(0..2));
    }

    #[test]
    fn a_full_spool_refuses_the_whole_append_and_names_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let limit = records(0..3).len() as u64;
        let mut spool = Spool::open(dir.path(), limit).unwrap();
        spool.append(&records(0..3), 3).unwrap();
        let error = spool.append(&records(3..4), 1).unwrap_err();
        match &error {
            Error::SpoolFull {
                limit: named, used, ..
            } => {
                assert_eq!(*named, limit);
                assert_eq!(*used, limit);
            }
            other => panic!("not a full-spool error: {other}"),
        }
        assert!(error.to_string().contains(&format!("limit {limit} bytes")));
        assert_eq!(spool.pending(), 3, "nothing of the refused append was kept");

        // Once some of it is replayed there is room again: replayed bytes are reclaimed.
        let batch = spool
            .next_batch(spool.offset(), 1, 1 << 20)
            .unwrap()
            .unwrap();
        spool.acknowledge(&batch).unwrap();
        spool.append(&records(3..4), 1).unwrap();
        let rest = spool
            .next_batch(spool.offset(), 100, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(lines_of(&rest.body), lines_of(&records(1..4)));
    }

    #[test]
    fn a_fully_replayed_spool_is_compacted_to_an_empty_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&records(0..3), 3).unwrap();
        let old = spool.segment_path();
        let batch = spool
            .next_batch(spool.offset(), 100, 1 << 20)
            .unwrap()
            .unwrap();
        spool.acknowledge(&batch).unwrap();
        assert!(!old.exists());
        assert_eq!(std::fs::metadata(spool.segment_path()).unwrap().len(), 0);
        assert_eq!(spool.pending(), 0);
        drop(spool);
        let status = read_status(dir.path()).unwrap();
        assert_eq!((status.pending_events, status.pending_bytes), (0, 0));
    }

    #[test]
    fn a_crash_during_compaction_leaves_one_consistent_spool() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
            spool.append(&records(0..3), 3).unwrap();
        }
        // The copy for the next segment was written, but the offset never moved to it.
        std::fs::write(segment_path(dir.path(), 2), records(1..3)).unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.pending(), 3);
        assert!(!segment_path(dir.path(), 2).exists());
    }

    #[test]
    fn a_second_owner_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 1 << 20).unwrap();
        let error = Spool::open(dir.path(), 1 << 20).err().unwrap();
        match error {
            Error::SpoolBusy { holder, .. } => assert_eq!(holder, Some(std::process::id())),
            other => panic!("not a busy error: {other}"),
        }
    }

    #[test]
    fn rejected_records_are_kept_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.reject(&records(0..1), "server answered 422").unwrap();
        let text = std::fs::read_to_string(dir.path().join(REJECTED_FILE)).unwrap();
        let entry: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(entry["reason"], "server answered 422");
        assert_eq!(entry["event"]["idempotency_key"], "k0");
        assert_eq!(spool.status().unwrap().rejected_events, 1);
    }
}
