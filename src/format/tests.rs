//! Unit tests for the byte layout.

use proptest::prelude::*;

use super::*;
use crate::error::CorruptionKind;
use crate::types::LogId;

fn encode(rec: &Record<'_>, flags: u8, epoch: u32, hint: u32) -> Vec<u8> {
    let mut buf = vec![0xAA; encoded_len(rec.body_len())];
    write_frame(
        &mut buf,
        rec.kind(),
        flags,
        epoch,
        hint,
        rec.body_len(),
        |b| rec.write_body(b),
    );
    buf
}

fn samples() -> Vec<Record<'static>> {
    vec![
        Record::Entry {
            id: LogId::new(3, 7),
            payload: b"hello",
        },
        Record::Entry {
            id: LogId::new(0, 0),
            payload: b"",
        },
        Record::Truncate {
            since: 9,
            last: None,
        },
        Record::Truncate {
            since: 9,
            last: Some(LogId::new(2, 8)),
        },
        Record::Purge {
            upto: LogId::new(2, 5),
        },
        Record::Commit {
            id: LogId::new(2, 6),
        },
        Record::Vote {
            vote: b"vote-bytes",
        },
        Record::UserData { data: None },
        Record::UserData { data: Some(b"ud") },
        Record::State(StateImage {
            vote: Some(b"v"),
            last: Some(LogId::new(1, 2)),
            committed: None,
            purged: Some(LogId::new(1, 1)),
            user_data: Some(b""),
        }),
        Record::State(StateImage::default()),
        Record::Seal,
    ]
}

#[test]
fn every_record_kind_round_trips() {
    for rec in samples() {
        let buf = encode(&rec, 0, 0xdead_beef, 128);
        assert_eq!(buf.len() % RECORD_ALIGN, 0);
        let f = decode_frame(&buf, 0xdead_beef).expect("frame");
        assert_eq!(f.hint, 128);
        assert_eq!(f.encoded_len, buf.len());
        assert_eq!(Record::decode(f.kind, f.body).expect("body"), rec);
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let rec = Record::Entry {
        id: LogId::new(5, 42),
        payload: b"some payload bytes",
    };
    let buf = encode(&rec, FLAG_CONTINUES, 7, 0);
    let body_end = RECORD_HEADER_LEN + rec.body_len();
    for byte in 0..body_end {
        for bit in 0..8 {
            let mut b = buf.clone();
            b[byte] ^= 1 << bit;
            assert!(
                decode_frame(&b, 7).is_err(),
                "flip at byte {byte} bit {bit} went unnoticed"
            );
        }
    }
}

#[test]
fn corrupted_length_is_an_error_not_a_shorter_record() {
    let rec = Record::Entry {
        id: LogId::new(1, 1),
        payload: &[9; 100],
    };
    let mut buf = encode(&rec, 0, 1, 0);
    buf.extend_from_slice(&[0u8; 256]);
    buf[4] = 10; // shrink the length
    assert!(matches!(
        decode_frame(&buf, 1),
        Err(FrameError::Corrupt(CorruptionKind::RecordChecksum { .. }))
    ));
    buf[4] = 0xff;
    buf[5] = 0xff;
    buf[6] = 0xff;
    assert!(matches!(
        decode_frame(&buf, 1),
        Err(FrameError::Corrupt(CorruptionKind::BadLength { .. }))
    ));
}

#[test]
fn zeroes_stale_epochs_and_short_buffers_are_told_apart() {
    assert_eq!(decode_frame(&[0u8; 10], 1), Err(FrameError::Truncated));
    assert_eq!(
        decode_frame(&[0u8; 64], 1),
        Err(FrameError::Corrupt(CorruptionKind::ZeroHeader))
    );
    let buf = encode(&Record::Seal, 0, 1, 0);
    assert!(matches!(
        decode_frame(&buf, 2),
        Err(FrameError::Corrupt(CorruptionKind::EpochMismatch { .. }))
    ));
}

#[test]
fn header_round_trip_and_rejections() {
    let h = ChunkHeader {
        version: FORMAT_VERSION,
        chunk_seq: 12,
        epoch: 0x1234_5678_9abc,
        chunk_size: 1 << 20,
        created_ms: 99,
    };
    let bytes = h.encode();
    assert_eq!(ChunkHeader::decode(&bytes), Ok(h));
    let mut bad = bytes;
    bad[0] = b'X';
    assert!(ChunkHeader::decode(&bad).is_err());
    let mut flipped = bytes;
    flipped[20] ^= 1;
    assert!(ChunkHeader::decode(&flipped).is_err());
    assert!(ChunkHeader::decode(&bytes[..10]).is_err());
    assert!(ChunkHeader::decode(&[]).is_err());
    let newer = ChunkHeader {
        version: FORMAT_VERSION + 1,
        ..h
    };
    assert_eq!(
        ChunkHeader::decode(&newer.encode()),
        Err(super::header::HeaderError::NewerVersion(FORMAT_VERSION + 1))
    );
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), epoch in any::<u32>()) {
        let _ = ChunkHeader::decode(&bytes);
        if let Ok(f) = decode_frame(&bytes, epoch) {
            let _ = Record::decode(f.kind, f.body);
        }
        for kind in 0..10u8 {
            let _ = Record::decode(kind, &bytes);
        }
    }

    #[test]
    fn entries_round_trip(term in any::<u64>(), index in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
        let rec = Record::Entry { id: LogId::new(term, index), payload: &payload };
        let buf = encode(&rec, 0, 3, 0);
        let f = decode_frame(&buf, 3).unwrap();
        prop_assert_eq!(Record::decode(f.kind, f.body).unwrap(), rec);
    }
}
