//! Fuzz target bodies, shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and the stable
//! corpus replay test (`tests/it/fuzz_corpus.rs`). Every function takes raw bytes, decodes
//! them itself (no `arbitrary`), and panics only when the engine breaks a promise.

#![allow(dead_code)]

use std::path::Path;

use bytes::Bytes;
use chunkwal::format::{
    decode_body, decode_frame, encoded_len, read_footer, write_frame, ChunkHeader, Record, Trailer,
    FORMAT_VERSION, HEADER_LEN, RECORD_HEADER_LEN, TRAILER_LEN,
};
use chunkwal::inspect::{chunk_file_name, Tail};
use chunkwal::{scan_chunk, Config, Error, LogId, RecoveryMode, VerifyOnOpen, Wal};

// ops_model lives in its own file (the target body and its model).
#[path = "fuzz_ops.rs"]
mod ops;
// `Model` is for the proptest model test (`tests/it/model.rs`); the targets do not use it.
#[allow(unused_imports)]
pub use ops::{ops_model, Model};

/// Chunk size every fuzzed log uses.
pub const CHUNK: u64 = 64 * 1024;
/// Epoch of the headers the harness writes, so that seeds can carry matching records.
pub const FIXED_EPOCH: u64 = 0x5EED_0000_C0FF_EE01;

/// Byte-driven input decoder: every read past the end yields `None`.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }
    pub fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from(self.u8()?) | (u16::from(self.u8()?) << 8))
    }
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
    /// Up to `n` bytes (fewer at the end of the input).
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.pos >= self.data.len() {
            return None;
        }
        let end = self.pos.saturating_add(n).min(self.data.len());
        let s = &self.data[self.pos..end];
        self.pos = end;
        Some(s)
    }
}

fn temp_dir() -> tempfile::TempDir {
    // RAM-backed when available: the targets create files on every run.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new()
            .prefix("chunkwal-fuzz")
            .tempdir_in(shm)
        {
            return d;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

// ---------------------------------------------------------------------------------------
// record_parser
// ---------------------------------------------------------------------------------------

/// Frame, record and header decoding plus `scan_chunk` on arbitrary bytes. Layout: a 4-byte
/// epoch tag, one control byte (bit 0: scan as the last chunk; bit 1: as a v2 chunk), then
/// the bytes.
/// Returns how many records the scan accepted.
pub fn record_parser(data: &[u8]) -> usize {
    let mut inp = Input::new(data);
    let Some(tag) = inp.take(4) else { return 0 };
    let tag = u32::from_le_bytes([
        tag[0],
        *tag.get(1).unwrap_or(&0),
        *tag.get(2).unwrap_or(&0),
        *tag.get(3).unwrap_or(&0),
    ]);
    let ctl = inp.u8().unwrap_or(0);
    let is_last = ctl & 1 == 1;
    // Bit 1: scan as a format v2 chunk (record kinds 9 and up are known there).
    let version = 1 + u32::from((ctl >> 1) & 1);
    let rest = &data[data.len().min(5)..];

    if let Ok(f) = decode_frame(rest, tag) {
        assert!(f.encoded_len >= RECORD_HEADER_LEN && f.encoded_len % 8 == 0);
        assert_eq!(f.encoded_len, encoded_len(f.body.len()));
        assert!(RECORD_HEADER_LEN + f.body.len() <= rest.len());
        if let Ok(r) = Record::decode(f.kind, f.body) {
            // What decodes re-encodes to the same record.
            let mut buf = vec![0u8; encoded_len(r.body_len())];
            write_frame(
                &mut buf,
                r.kind(),
                f.flags,
                tag,
                f.hint,
                r.body_len(),
                |b| r.write_body(b),
            );
            let f2 = decode_frame(&buf, tag).expect("re-encoded frame decodes");
            assert_eq!(Record::decode(f2.kind, f2.body), Ok(r));
            assert_eq!(f2.body, f.body, "encoding is canonical");
        }
    }
    if let Some((&kind, body)) = rest.split_first() {
        let _ = Record::decode(kind, body);
    }
    if let Ok(h) = ChunkHeader::decode(rest) {
        assert_eq!(&h.encode()[..], &rest[..HEADER_LEN], "header round trip");
    }
    // The footer decoders are total too; what validates re-encodes to the same trailer.
    if let Ok(f) = read_footer(rest, rest.len() as u64, tag) {
        let at = rest.len() - TRAILER_LEN;
        assert_eq!(&f.trailer.encode()[..], &rest[at..], "trailer round trip");
    }
    if let Ok(t) = Trailer::decode(rest) {
        assert_eq!(&t.encode()[..], &rest[..TRAILER_LEN], "trailer round trip");
    }
    let _ = decode_body(rest, u32::MAX);
    let mut prev_end = HEADER_LEN;
    let mut seen = 0;
    let r = scan_chunk(rest, 3, tag, version, is_last, &mut |s| {
        assert!(s.offset >= prev_end, "records out of order");
        assert!(s.offset + s.encoded_len <= rest.len().max(HEADER_LEN) + 7);
        prev_end = s.offset + s.encoded_len;
        seen += 1;
        Ok(())
    });
    match r {
        Ok(Tail::Sealed { end } | Tail::Clean { end }) => assert!(end >= HEADER_LEN),
        Ok(Tail::Torn {
            end,
            at,
            garbage_end,
            ..
        }) => {
            assert!(is_last, "only the last chunk may be torn");
            assert!(end <= at && end < garbage_end && garbage_end <= rest.len());
        }
        Ok(t) => panic!("a tail verdict this harness does not know: {t:?}"),
        Err(Error::Corruption { chunk, .. }) => assert_eq!(chunk, 3),
        Err(e) => panic!("scan gave a non-corruption error: {e}"),
    }
    seen
}

// ---------------------------------------------------------------------------------------
// open_recovery
// ---------------------------------------------------------------------------------------

fn header_bytes(seq: u64) -> [u8; HEADER_LEN] {
    ChunkHeader {
        version: FORMAT_VERSION,
        chunk_seq: seq,
        epoch: FIXED_EPOCH,
        chunk_size: CHUNK,
        created_ms: 0,
    }
    .encode()
}

/// Records built from the input, each framed with a correct CRC: lets the fuzzer reach the
/// semantic checks (bodies, indexes, state) behind the checksums.
fn built_records(inp: &mut Input<'_>, out: &mut Vec<u8>) {
    let Some(n) = inp.u8() else { return };
    for _ in 0..(n % 32) {
        let (Some(kind), Some(flags), Some(hint), Some(len)) =
            (inp.u8(), inp.u8(), inp.u16(), inp.u8())
        else {
            return;
        };
        let body = inp.take(usize::from(len)).unwrap_or_default();
        let mut buf = vec![0u8; encoded_len(body.len())];
        write_frame(
            &mut buf,
            kind % 10,
            flags & 1,
            FIXED_EPOCH as u32,
            u32::from(hint),
            body.len(),
            |b| b.copy_from_slice(body),
        );
        out.extend_from_slice(&buf);
    }
}

/// Write arbitrary chunk files (raw, after a valid header, or built from framed records),
/// open the log, read everything back; then append, flush and reopen. Layout: control byte
/// (bit 0 strict, bits 1-2 file count - 1, bit 3 start at chunk 7, bit 4 write afterwards,
/// bit 5 the newest of several files is a pending rotation's `.chunk.tmp`),
/// then per file a kind byte (bit 0 valid header, bit 1 zero-pad to the chunk size, bit 2
/// framed records, bit 3 a trailer follows), a u16 length and that many bytes (or the
/// framed records), then with bit 3 32 bytes written at `chunk_size - 32`, the file padded
/// to the chunk size (a seal-time footer's trailer, format v2).
/// Returns the number of entries recovered, or `None` if open refused the files.
pub fn open_recovery(data: &[u8]) -> Option<usize> {
    let d = temp_dir();
    let (ctl, mode) = write_chunk_files(data, d.path())?;
    // The same files, for a full open to compare with (open may change files).
    let twin = copy_files(d.path());
    let cfg = || Config::new(d.path()).chunk_size(CHUNK).recovery_mode(mode);
    let full = || {
        let c = Config::new(twin.path()).chunk_size(CHUNK);
        Wal::open(c.recovery_mode(mode).verify_on_open(VerifyOnOpen::Full))
    };
    // A lazy open (the default).
    let wal = match Wal::open(cfg()) {
        Ok(w) => w,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    Error::Corruption { .. } | Error::UnsupportedVersion { .. }
                ),
                "open failed with an unexpected error: {e:?}"
            );
            return None;
        }
    };
    // It replays sealed chunks from their footers without reading their entries: damage
    // there shows when they are read, as a `Corruption` a full open reports too.
    if let Some(e) = lazy_damage(&wal) {
        drop(wal);
        let r = full();
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "a read after a lazy open found {e:?}, a full open gave {:?}",
            r.err()
        );
        return None;
    }
    // Replay checks truncate and state records against the entries (records with a valid
    // CRC that contradict the log are corruption), so an opened log is self-consistent.
    assert!(
        self_consistent(&wal),
        "state disagrees with the entries: {:?}",
        wal.log_state()
    );
    let entries = read_all_entries(&wal);
    // A full open of the same files rebuilds the same log.
    match full() {
        Ok(f) => {
            assert_eq!(f.log_state(), wal.log_state(), "lazy and full opens differ");
            assert_eq!(read_all_entries(&f), entries, "lazy and full opens differ");
        }
        Err(e) => assert!(
            matches!(e, Error::Corruption { .. }),
            "full open failed with {e:?} where a lazy one opened"
        ),
    }
    if ctl & 0x10 == 0 {
        return Some(entries.len());
    }
    let s = wal.log_state();
    let next = s.last.map_or(1, |l| l.index.wrapping_add(1));
    let id = LogId::new(s.last.map_or(1, |l| l.term), next);
    let p = Bytes::from_static(b"after recovery");
    if next == 0 {
        // Nothing can follow index u64::MAX: refused with an error, never wrapped to 0.
        let r = wal.append([(id, p)]);
        assert!(
            matches!(r, Err(Error::IndexOverflow | Error::NonContiguous { .. })),
            "append past index u64::MAX: {r:?}"
        );
        return Some(entries.len());
    }
    wal.append([(id, p.clone())])
        .expect("append after recovery");
    wal.flush_blocking().expect("flush after recovery");
    wal.close().expect("close after recovery");
    let wal = Wal::open(cfg()).expect("reopen after a successful recovery and write");
    assert_eq!(wal.entry(id.index).expect("read"), Some((id, p)));
    let again = read_all_entries(&wal);
    assert_eq!(
        again.len(),
        entries.len() + 1,
        "entries lost by a write after recovery"
    );
    Some(entries.len())
}

/// Decode the open_recovery layout and write its chunk files into `dir`.
/// Returns the control byte and the recovery mode.
pub fn write_chunk_files(data: &[u8], dir: &Path) -> Option<(u8, RecoveryMode)> {
    let mut inp = Input::new(data);
    let ctl = inp.u8()?;
    let mode = if ctl & 1 == 1 {
        RecoveryMode::Strict
    } else {
        RecoveryMode::TolerateTornTail
    };
    let files = 1 + usize::from((ctl >> 1) & 3);
    let first_seq = if ctl & 8 != 0 { 7 } else { 0 };
    for i in 0..files {
        let Some(kind) = inp.u8() else { break };
        let seq = first_seq + i as u64;
        let mut bytes = Vec::new();
        if kind & 1 == 1 || kind & 4 == 4 {
            bytes.extend_from_slice(&header_bytes(seq));
        }
        if kind & 4 == 4 {
            built_records(&mut inp, &mut bytes);
        } else {
            let len = inp.u16().unwrap_or(0);
            bytes.extend_from_slice(inp.take(usize::from(len)).unwrap_or_default());
        }
        if kind & 2 == 2 && (bytes.len() as u64) < CHUNK {
            bytes.resize(CHUNK as usize, 0);
        }
        if kind & 8 == 8 {
            let trailer = inp.take(TRAILER_LEN).unwrap_or_default();
            bytes.resize(CHUNK as usize, 0);
            let at = CHUNK as usize - TRAILER_LEN;
            bytes[at..at + trailer.len()].copy_from_slice(trailer);
        }
        // Bit 0x20: the newest of several files is still a prepared (temporary) chunk, as a
        // process crash leaves one when a rotation's install has not run yet.
        let name = if ctl & 0x20 != 0 && files > 1 && i + 1 == files {
            format!("{}.tmp", chunk_file_name(seq))
        } else {
            chunk_file_name(seq)
        };
        std::fs::write(dir.join(name), &bytes).expect("write chunk");
    }
    Some((ctl, mode))
}

/// Whether the recovered state agrees with the recovered entries: the last id names the
/// last entry (or the purge point of an empty log) and entries start after the purge point.
fn self_consistent(wal: &Wal) -> bool {
    let s = wal.log_state();
    let n = wal.stat().entries as u64;
    let Some(last) = s.last else {
        return n == 0;
    };
    if s.purged.is_some_and(|p| p.index > last.index) {
        return false;
    }
    if n == 0 {
        return s.purged == Some(last);
    }
    let first = last.index.wrapping_add(1).wrapping_sub(n);
    if first > last.index {
        return false;
    }
    if s.purged
        .is_some_and(|p| p.index.checked_add(1) != Some(first))
    {
        return false;
    }
    let named = matches!(wal.entry(last.index), Ok(Some((id, _))) if id == last);
    named && matches!(wal.entry(first), Ok(Some(_)))
}

/// Copy the files of `from` into a new temporary directory.
fn copy_files(from: &Path) -> tempfile::TempDir {
    let to = temp_dir();
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.path().join(e.file_name())).expect("copy");
    }
    to
}

/// The `Corruption` a read of every entry (or a dump) of `wal` meets, if any.
fn lazy_damage(wal: &Wal) -> Option<Error> {
    let s = wal.log_state();
    let n = wal.stat().entries as u64;
    let last = s.last?;
    let first = last.index.wrapping_add(1).wrapping_sub(n);
    let read = if n == 0 {
        Ok(Vec::new())
    } else {
        wal.read(first..=last.index)
    };
    match read.and_then(|_| wal.dump()) {
        Err(e @ Error::Corruption { .. }) => Some(e),
        _ => None,
    }
}

/// Read every entry of an opened log and check the index agrees with itself.
fn read_all_entries(wal: &Wal) -> Vec<(LogId, Bytes)> {
    let s = wal.log_state();
    let n = wal.stat().entries as u64;
    let Some(last) = s.last else {
        assert_eq!(n, 0, "entries without a last id");
        return Vec::new();
    };
    if n == 0 {
        return Vec::new();
    }
    let first = last.index.wrapping_add(1).wrapping_sub(n);
    // Inclusive, so an entry at u64::MAX is read too.
    let got = wal.read(first..=last.index).expect("read of an opened log");
    assert_eq!(got.len() as u64, n);
    assert_eq!(wal.read(..).expect("read of the whole log"), got);
    assert_eq!(got.last().map(|e| e.0), Some(last), "last id");
    for (i, (id, p)) in got.iter().enumerate() {
        assert_eq!(id.index, first + i as u64);
        assert_eq!(wal.entry(id.index).expect("entry"), Some((*id, p.clone())));
    }
    wal.dump().expect("dump of an opened log");
    got
}
