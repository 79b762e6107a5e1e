//! Unit tests for the seal-time footer: builder round trips, validation, hostile bytes.

use proptest::prelude::*;

use super::*;
use crate::types::LogId;

pub(super) const TAG: u32 = 0x1234_abcd;
pub(super) const SIZE: usize = 16 * 1024;

pub(super) fn frame(buf: &mut Vec<u8>, rec: &Record<'_>, flags: u8) -> u32 {
    let off = buf.len();
    buf.resize(off + encoded_len(rec.body_len()), 0);
    write_frame(
        &mut buf[off..],
        rec.kind(),
        flags,
        TAG,
        0,
        rec.body_len(),
        |b| rec.write_body(b),
    );
    off as u32
}

/// A sealed v2 chunk image of `SIZE` bytes holding `recs`, with its footer. Returns the
/// image and the builder.
fn sealed(recs: &[Record<'_>]) -> (Vec<u8>, FooterBuilder) {
    let h = ChunkHeader {
        version: 2,
        chunk_seq: 1,
        epoch: u64::from(TAG),
        chunk_size: SIZE as u64,
        created_ms: 0,
    };
    let mut buf = h.encode().to_vec();
    let mut b = FooterBuilder::new();
    for r in recs {
        let off = frame(&mut buf, r, 0);
        match r {
            Record::Entry { id, .. } => b.push_entry(id.index, id.term, off),
            _ => b.push_record(off),
        }
    }
    let mut body = vec![0u8; b.body_len()];
    b.encode_body(&mut body);
    let index_off = frame(&mut buf, &Record::Index { body: &body }, FLAG_CONTINUES);
    let seal_off = frame(&mut buf, &Record::Seal, 0);
    buf.resize(SIZE, 0);
    buf[SIZE - TRAILER_LEN..].copy_from_slice(&b.trailer(TAG, index_off, seal_off).encode());
    (buf, b)
}

pub(super) fn entry(term: u64, index: u64) -> Record<'static> {
    Record::Entry {
        id: LogId::new(term, index),
        payload: b"some payload",
    }
}

pub(super) fn workload() -> Vec<Record<'static>> {
    let mut v = vec![Record::State(StateImage::default())];
    v.extend((1..=5).map(|i| entry(1, i)));
    v.push(Record::Commit {
        id: LogId::new(1, 3),
    });
    v.extend((6..=8).map(|i| entry(1, i)));
    v.extend((9..=11).map(|i| entry(2, i)));
    v.push(Record::Truncate {
        since: 10,
        last: Some(LogId::new(2, 9)),
    });
    v.extend((10..=12).map(|i| entry(3, i)));
    v.push(Record::Vote { vote: b"v" });
    v
}

#[test]
fn builder_round_trips_through_the_decoder() {
    let (buf, b) = sealed(&workload());
    let f = read_footer(&buf, SIZE as u64, TAG).expect("valid footer");
    assert_eq!(f.trailer.n_entries, 14);
    assert_eq!(b.n_entries(), 14);
    assert_eq!(b.n_items(), 8);
    let shape: Vec<_> = f
        .items
        .iter()
        .map(|i| match i {
            Item::Run(r) => (1, r.first, r.term, r.count()),
            Item::Record { .. } => (2, 0, 0, 0),
        })
        .collect();
    assert_eq!(
        shape,
        [
            (2, 0, 0, 0),
            (1, 1, 1, 5),
            (2, 0, 0, 0),
            (1, 6, 1, 3),
            (1, 9, 2, 3),
            (2, 0, 0, 0),
            (1, 10, 3, 3),
            (2, 0, 0, 0),
        ]
    );
    // Every offset names the record it stands for.
    let mut offsets = Vec::new();
    for i in &f.items {
        match i {
            Item::Run(r) => offsets.extend(r.offsets()),
            Item::Record { offset } => offsets.push(*offset),
        }
    }
    let mut at = HEADER_LEN;
    for (r, off) in workload().iter().zip(&offsets) {
        assert_eq!(*off as usize, at);
        let fr = decode_frame(&buf[at..], TAG).expect("record");
        assert_eq!(Record::decode(fr.kind, fr.body), Ok(*r));
        at += fr.encoded_len;
    }
}

#[test]
fn batch_members_share_an_offset_and_runs_are_padded() {
    let mut b = FooterBuilder::new();
    b.push_record(64);
    for i in 0..3 {
        b.push_entry(10 + i, 4, 128);
    }
    b.push_entry(13, 4, 512);
    assert_eq!(b.body_len(), BODY_HEAD_LEN + 8 + 24 + 16);
    let mut body = vec![0xEE; b.body_len()];
    b.encode_body(&mut body);
    let (items, n) = decode_body(&body, 1024).expect("decodes");
    assert_eq!(n, 4);
    let Item::Run(r) = items[1] else {
        panic!("{items:?}")
    };
    assert_eq!((r.first, r.last()), (10, 13));
    assert_eq!(r.offsets().collect::<Vec<_>>(), [128, 128, 128, 512]);
    // An odd count pads its offsets to 8 bytes with zeros.
    b.push_entry(14, 4, 520);
    assert_eq!(b.body_len(), BODY_HEAD_LEN + 8 + 24 + 24);
    let mut body = vec![0xEE; b.body_len()];
    b.encode_body(&mut body);
    assert_eq!(&body[body.len() - 4..], &[0; 4]);
    assert!(decode_body(&body, 1024).is_ok());
    b.clear();
    assert_eq!(b.body_len(), BODY_HEAD_LEN);
}

#[test]
fn empty_chunk_footer_validates() {
    let (buf, _) = sealed(&[]);
    let f = read_footer(&buf, SIZE as u64, TAG).expect("valid");
    assert!(f.items.is_empty());
}

#[test]
fn trailer_round_trip_and_damage() {
    let t = Trailer {
        tag: 7,
        index_off: 64,
        seal_off: 128,
        n_entries: 3,
    };
    let raw = t.encode();
    assert_eq!(Trailer::decode(&raw), Ok(t));
    assert_eq!(
        Trailer::decode(&[0; TRAILER_LEN]),
        Err(FooterError::NoMagic)
    );
    assert_eq!(Trailer::decode(&raw[..31]), Err(FooterError::NoMagic));
    for i in 0..TRAILER_LEN {
        for bit in 0..8 {
            let mut r = raw;
            r[i] ^= 1 << bit;
            assert!(Trailer::decode(&r).is_err(), "flip {i}.{bit} accepted");
        }
    }
}

/// Position of the trailer in the image.
const T: usize = SIZE - TRAILER_LEN;

/// Re-seal a patched trailer with a correct CRC, so a test reaches the checks behind it.
fn patch_trailer(buf: &mut [u8], f: impl FnOnce(&mut Trailer)) {
    let mut t = Trailer::decode(&buf[T..]).expect("trailer");
    f(&mut t);
    buf[T..].copy_from_slice(&t.encode());
}

#[test]
fn each_validation_step_refuses_its_damage() {
    let (good, _) = sealed(&workload());
    let t = Trailer::decode(&good[T..]).expect("trailer");
    let check = |buf: &[u8], want: fn(&FooterError) -> bool| {
        let e = read_footer(buf, SIZE as u64, TAG).expect_err("damage accepted");
        assert!(want(&e), "unexpected error {e:?}");
    };
    check(&good[..SIZE - 1], |e| {
        matches!(e, FooterError::Short { .. })
    });
    let mut b = good.clone();
    b[T..].fill(0);
    check(&b, |e| matches!(e, FooterError::NoMagic));
    let mut b = good.clone();
    b[T + 13] ^= 1;
    check(&b, |e| matches!(e, FooterError::TrailerChecksum { .. }));
    let mut b = good.clone();
    patch_trailer(&mut b, |t| t.tag ^= 1);
    check(&b, |e| matches!(e, FooterError::StaleTrailer { .. }));
    for (i, s) in [
        (t.index_off + 1, t.seal_off),
        (t.seal_off, t.seal_off),
        (32, t.seal_off),
        (t.index_off, T as u32),
        (t.index_off, u32::MAX - 7),
    ] {
        let mut b = good.clone();
        patch_trailer(&mut b, |t| (t.index_off, t.seal_off) = (i, s));
        check(&b, |e| matches!(e, FooterError::TrailerOffsets { .. }));
    }
    // Offsets that pass the bounds but name the wrong records.
    let mut b = good.clone();
    patch_trailer(&mut b, |t| t.index_off = HEADER_LEN as u32);
    check(&b, |e| matches!(e, FooterError::WrongRecord { .. }));
    let mut b = good.clone();
    patch_trailer(&mut b, |t| t.seal_off += 8);
    check(&b, |e| {
        matches!(e, FooterError::IndexEnd { .. } | FooterError::Frame { .. })
    });
    let mut b = good.clone();
    patch_trailer(&mut b, |t| t.n_entries += 1);
    check(&b, |e| matches!(e, FooterError::EntryCount { .. }));
    // A flipped byte in the Index record fails its CRC.
    let mut b = good.clone();
    b[t.index_off as usize + 40] ^= 0x10;
    check(&b, |e| matches!(e, FooterError::Frame { .. }));
    // A Seal that is gone.
    let mut b = good.clone();
    b[t.seal_off as usize..t.seal_off as usize + 24].fill(0);
    check(&b, |e| matches!(e, FooterError::Frame { .. }));
}

/// Build an Index body from raw items (to test the decoder beyond what the builder makes).
pub(super) fn body(n_items: u32, items: &[u8]) -> Vec<u8> {
    let mut v = n_items.to_le_bytes().to_vec();
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(items);
    v
}

pub(super) fn run(count: u32, first: u64, term: u64, offsets: &[u32]) -> Vec<u8> {
    let mut v = vec![1, 0, 0, 0];
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&first.to_le_bytes());
    v.extend_from_slice(&term.to_le_bytes());
    for o in offsets {
        v.extend_from_slice(&o.to_le_bytes());
    }
    v.resize(v.len().next_multiple_of(8), 0);
    v
}

pub(super) fn rec(offset: u32) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0];
    v.extend_from_slice(&offset.to_le_bytes());
    v
}

#[test]
fn decoder_refuses_hostile_bodies() {
    let err = |b: &[u8]| decode_body(b, 4096).expect_err("accepted");
    assert!(matches!(err(&[0; 7]), FooterError::BodyShort { .. }));
    // Counts are checked against the bytes before anything is allocated.
    assert!(matches!(
        err(&body(u32::MAX, &[])),
        FooterError::ItemCount { .. }
    ));
    assert!(matches!(
        err(&body(2, &rec(64))),
        FooterError::ItemCount { .. }
    ));
    assert!(matches!(
        err(&body(1, &run(u32::MAX, 1, 1, &[64]))),
        FooterError::ItemTruncated { .. }
    ));
    assert!(matches!(
        err(&body(1, &run(3, 1, 1, &[64]))),
        FooterError::ItemTruncated { .. }
    ));
    assert!(matches!(
        err(&body(1, &run(0, 1, 1, &[64]))),
        FooterError::RunCount { .. }
    ));
    assert!(matches!(
        err(&body(1, &run(2, u64::MAX, 1, &[64, 128]))),
        FooterError::RunCount { .. }
    ));
    let mut bad_tag = rec(64);
    bad_tag[0] = 4;
    assert!(matches!(
        err(&body(1, &bad_tag)),
        FooterError::ItemTag { tag: 4, .. }
    ));
    let mut reserved = rec(64);
    reserved[2] = 1;
    assert!(matches!(
        err(&body(1, &reserved)),
        FooterError::ItemReserved { .. }
    ));
    let mut pad = run(1, 1, 1, &[64]);
    pad[31] = 1;
    assert!(matches!(
        err(&body(1, &pad)),
        FooterError::ItemReserved { .. }
    ));
    let mut head = body(1, &rec(64));
    head[5] = 1;
    assert!(matches!(err(&head), FooterError::ItemReserved { at: 4 }));
    // Offsets: misaligned, inside the header, past the Index record, out of order.
    for off in [68, 0, 56, 4096, 8192] {
        assert!(matches!(
            err(&body(1, &rec(off))),
            FooterError::ItemOffset { .. }
        ));
    }
    let two = [rec(128), rec(128)].concat();
    assert!(matches!(
        err(&body(2, &two)),
        FooterError::ItemOffset { .. }
    ));
    let back = [rec(128), run(1, 1, 1, &[64])].concat();
    assert!(matches!(
        err(&body(2, &back)),
        FooterError::ItemOffset { .. }
    ));
    let inner = run(2, 1, 1, &[128, 64]);
    assert!(matches!(
        err(&body(1, &inner)),
        FooterError::ItemOffset { .. }
    ));
    assert!(matches!(
        err(&body(1, &[rec(64), rec(72)].concat())),
        FooterError::TrailingBytes { extra: 8 }
    ));
    // The same shapes, well formed, decode.
    assert!(decode_body(&body(2, &[rec(64), run(2, 1, 1, &[72, 72])].concat()), 4096).is_ok());
}

#[test]
fn footer_growth_per_record_is_bounded() {
    let mut b = FooterBuilder::new();
    let mut prev = b.body_len();
    let mut off = 64u32;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..2000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        match rng % 4 {
            0 => b.push_record(off),
            1 => b.push_entry(i * 2, 1, off),
            _ => b.push_entry(b.n_entries() + 1, rng % 3, off),
        }
        off += 40;
        assert!(b.body_len() - prev <= MAX_GROWTH_PER_RECORD);
        prev = b.body_len();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_body_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512), limit in any::<u32>()) {
        let _ = decode_body(&bytes, limit);
    }

    #[test]
    fn decode_body_of_small_items_is_total(
        n in 0u32..8,
        raw in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(64), any::<u8>()], 0..256),
    ) {
        let b = body(n, &raw);
        if let Ok((items, _)) = decode_body(&b, 2048) {
            prop_assert!(items.len() == n as usize);
        }
    }

    /// Damage anywhere in a sealed image: the footer is refused or, if the damage missed
    /// everything it covers, returned unchanged; never a panic, never other items.
    #[test]
    fn read_footer_never_returns_damaged_items(
        flips in proptest::collection::vec((0usize..SIZE, 1u8..=255), 1..4),
    ) {
        let (good, _) = sealed(&workload());
        let want = read_footer(&good, SIZE as u64, TAG).expect("valid").items;
        let mut b = good.clone();
        for (at, x) in flips {
            b[at] ^= x;
        }
        if let Ok(f) = read_footer(&b, SIZE as u64, TAG) {
            prop_assert_eq!(f.items, want);
        }
    }

    #[test]
    fn read_footer_of_random_bytes_is_total(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        size in 0u64..8192,
        tag in any::<u32>(),
    ) {
        let _ = read_footer(&bytes, size, tag);
    }
}
