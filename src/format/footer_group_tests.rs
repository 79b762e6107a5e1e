//! Unit tests for the footer's group runs (`TAG_GROUP_RUN`, issue #15): round trips with
//! default runs and Record items, run boundaries at group changes, the default group's
//! unchanged bytes, and hostile group run heads.

use proptest::prelude::*;

use super::footer_tests::{body, entry, frame, rec, run, SIZE, TAG};
use super::*;
use crate::types::LogId;

/// A `TAG_GROUP_RUN` item, encoded by hand (independently of the builder).
fn grun(count: u32, first: u64, term: u64, group: u64, offsets: &[u32]) -> Vec<u8> {
    let mut v = vec![3, 0, 0, 0];
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&first.to_le_bytes());
    v.extend_from_slice(&term.to_le_bytes());
    v.extend_from_slice(&group.to_le_bytes());
    for o in offsets {
        v.extend_from_slice(&o.to_le_bytes());
    }
    v.resize(v.len().next_multiple_of(8), 0);
    v
}

fn encoded(b: &FooterBuilder) -> Vec<u8> {
    let mut body = vec![0xEE; b.body_len()];
    b.encode_body(&mut body);
    body
}

/// (group, first, term, offsets) of each run, `None` for a Record item.
type Shape = Vec<Option<(u64, u64, u64, Vec<u32>)>>;

fn shape(items: &[Item<'_>]) -> Shape {
    items
        .iter()
        .map(|i| match i {
            Item::Run(r) => Some((r.group, r.first, r.term, r.offsets().collect())),
            Item::Record { .. } => None,
        })
        .collect()
}

/// A sealed v2 chunk image of `SIZE` bytes holding `recs` (group, record), with its footer.
fn sealed_in(recs: &[(u64, Record<'_>)]) -> Vec<u8> {
    let h = ChunkHeader {
        version: 2,
        chunk_seq: 1,
        epoch: u64::from(TAG),
        chunk_size: SIZE as u64,
        created_ms: 0,
    };
    let mut buf = h.encode().to_vec();
    let mut b = FooterBuilder::new();
    for (g, r) in recs {
        let off = frame(&mut buf, r, 0);
        b.push_in(*g, r, off);
    }
    let body = encoded(&b);
    let index_off = frame(&mut buf, &Record::Index { body: &body }, FLAG_CONTINUES);
    let seal_off = frame(&mut buf, &Record::Seal, 0);
    buf.resize(SIZE, 0);
    buf[SIZE - TRAILER_LEN..].copy_from_slice(&b.trailer(TAG, index_off, seal_off).encode());
    buf
}

fn mixed() -> Vec<(u64, Record<'static>)> {
    let mut v = vec![(0, Record::State(StateImage::default()))];
    v.extend((1..=3).map(|i| (0, entry(1, i))));
    v.extend((1..=2).map(|i| (7, entry(5, i))));
    v.push((
        7,
        Record::Commit {
            id: LogId::new(5, 1),
        },
    ));
    v.extend((3..=5).map(|i| (7, entry(5, i))));
    v.push((0, entry(1, 4)));
    v.push((9, entry(2, 40)));
    v
}

#[test]
fn mixed_group_runs_round_trip_byte_for_byte() {
    let recs = mixed();
    let buf = sealed_in(&recs);
    let f = read_footer(&buf, SIZE as u64, TAG).expect("valid footer");
    assert_eq!(f.trailer.n_entries, 10);
    // Each record's offset, measured from the frames themselves.
    let mut offs = Vec::new();
    let mut at = HEADER_LEN;
    for _ in &recs {
        offs.push(at as u32);
        at += decode_frame(&buf[at..], TAG).expect("record").encoded_len;
    }
    assert_eq!(
        shape(&f.items),
        vec![
            None,
            Some((0, 1, 1, offs[1..4].to_vec())),
            Some((7, 1, 5, offs[4..6].to_vec())),
            None,
            Some((7, 3, 5, offs[7..10].to_vec())),
            Some((0, 4, 1, vec![offs[10]])),
            Some((9, 40, 2, vec![offs[11]])),
        ]
    );
    // The bytes are exactly the documented layout.
    let want = body(
        7,
        &[
            rec(offs[0]),
            run(3, 1, 1, &offs[1..4]),
            grun(2, 1, 5, 7, &offs[4..6]),
            rec(offs[6]),
            grun(3, 3, 5, 7, &offs[7..10]),
            run(1, 4, 1, &offs[10..11]),
            grun(1, 40, 2, 9, &offs[11..12]),
        ]
        .concat(),
    );
    let mut b = FooterBuilder::new();
    for ((g, r), off) in recs.iter().zip(&offs) {
        b.push_in(*g, r, *off);
    }
    assert_eq!(encoded(&b), want);
}

#[test]
fn a_group_change_ends_a_run() {
    let mut b = FooterBuilder::new();
    // Indexes and terms follow on; only the group changes.
    b.push_entry_in(5, 10, 1, 64);
    b.push_entry_in(6, 11, 1, 72);
    b.push_entry_in(0, 12, 1, 80);
    b.push_entry_in(5, 13, 1, 88);
    b.push_entry_in(5, 14, 1, 96);
    assert_eq!(b.n_items(), 4);
    let bytes = encoded(&b);
    let (items, n) = decode_body(&bytes, 4096).expect("decodes");
    assert_eq!(n, 5);
    assert_eq!(
        shape(&items),
        vec![
            Some((5, 10, 1, vec![64])),
            Some((6, 11, 1, vec![72])),
            Some((0, 12, 1, vec![80])),
            Some((5, 13, 1, vec![88, 96])),
        ]
    );
    // A Batch of a group: every member at the batch's offset, in one group run.
    let mut b = FooterBuilder::new();
    let head = BatchHead {
        first: 3,
        term: 2,
        count: 3,
        codec: CODEC_LZ4,
        raw_len: 0,
    };
    b.push_in(4, &Record::Batch { head, data: &[] }, 128);
    let bytes = encoded(&b);
    let (items, _) = decode_body(&bytes, 4096).expect("decodes");
    assert_eq!(shape(&items), vec![Some((4, 3, 2, vec![128; 3]))]);
}

#[test]
fn default_group_bytes_are_unchanged() {
    let recs: Vec<_> = super::footer_tests::workload();
    let (mut a, mut b) = (FooterBuilder::new(), FooterBuilder::new());
    let mut items = Vec::new();
    let mut off = HEADER_LEN as u32;
    for r in &recs {
        a.push(r, off);
        b.push_in(0, r, off);
        items.push((r, off));
        off += 40;
    }
    assert_eq!(encoded(&a), encoded(&b));
    // And it is the pre-group layout: `TAG_RUN` heads of 24 bytes, no group field.
    let mut raw = Vec::new();
    let mut n = 0;
    let mut i = 0;
    while i < items.len() {
        let (r, o) = items[i];
        if let Record::Entry { id, .. } = r {
            let mut offs = vec![o];
            while let Some((Record::Entry { id: next, .. }, o2)) = items.get(i + 1) {
                if next.term != id.term || next.index != id.index + offs.len() as u64 {
                    break;
                }
                offs.push(*o2);
                i += 1;
            }
            raw.extend(run(offs.len() as u32, id.index, id.term, &offs));
        } else {
            raw.extend(rec(o));
        }
        n += 1;
        i += 1;
    }
    assert_eq!(encoded(&a), body(n, &raw));
}

#[test]
fn damaged_group_run_heads_are_refused() {
    let err = |b: &[u8]| decode_body(b, 4096).expect_err("accepted");
    let good = body(1, &grun(2, 1, 1, 7, &[64, 72]));
    assert!(decode_body(&good, 4096).is_ok());
    assert!(matches!(
        err(&body(1, &grun(2, 1, 1, 0, &[64, 72]))),
        FooterError::GroupRunZero {
            at: 8,
            first: 1,
            count: 2
        }
    ));
    assert!(matches!(
        err(&body(1, &grun(0, 1, 1, 7, &[]))),
        FooterError::RunCount { count: 0, .. }
    ));
    assert!(matches!(
        err(&body(1, &grun(2, u64::MAX, 1, 7, &[64, 72]))),
        FooterError::RunCount { .. }
    ));
    for count in [3, 1000, u32::MAX] {
        assert!(matches!(
            err(&body(1, &grun(count, 1, 1, 7, &[64, 72]))),
            FooterError::ItemTruncated { at: 8 }
        ));
    }
    // A count smaller than the offsets leaves bytes over (or non-zero padding).
    assert!(matches!(
        err(&body(1, &grun(1, 1, 1, 7, &[64, 72]))),
        FooterError::ItemReserved { .. } | FooterError::TrailingBytes { .. }
    ));
    for at in 1..4 {
        let mut b = good.clone();
        b[8 + at] = 1;
        assert!(matches!(err(&b), FooterError::ItemReserved { at: 8 }));
    }
    let mut padded = body(1, &grun(1, 1, 1, 7, &[64]));
    padded[8 + 32 + 5] = 1;
    assert!(matches!(err(&padded), FooterError::ItemReserved { at: 8 }));
    // Every truncation, including a head cut to a plain run's 24 bytes.
    for len in 0..good.len() {
        assert!(
            decode_body(&good[..len], 4096).is_err(),
            "{len} bytes accepted"
        );
    }
    assert!(matches!(
        err(&body(1, &good[8..8 + 24])),
        FooterError::ItemTruncated { at: 8 }
    ));
    // Offsets are checked as a plain run's are.
    assert!(matches!(
        err(&body(1, &grun(2, 1, 1, 7, &[72, 64]))),
        FooterError::ItemOffset { .. }
    ));
    assert!(matches!(
        err(&body(2, &[rec(128), grun(1, 1, 1, 7, &[64])].concat())),
        FooterError::ItemOffset { .. }
    ));
}

#[test]
fn group_record_growth_is_bounded() {
    assert_eq!(MAX_GROWTH_PER_GROUP_RECORD, 40);
    let mut b = FooterBuilder::new();
    b.push_entry_in(3, 1, 1, 64);
    assert_eq!(b.body_len() - BODY_HEAD_LEN, MAX_GROWTH_PER_GROUP_RECORD);
    let mut prev = b.body_len();
    let mut off = 72u32;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..2000u64 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let group = rng % 3;
        match (rng >> 8) % 3 {
            0 => b.push_record(off),
            1 => b.push_entry_in(group, i, 1, off),
            _ => b.push_entry_in(group, b.n_entries() + 1, rng % 2, off),
        }
        off += 40;
        let bound = if group == 0 {
            MAX_GROWTH_PER_RECORD
        } else {
            MAX_GROWTH_PER_GROUP_RECORD
        };
        assert!(b.body_len() - prev <= bound);
        prev = b.body_len();
    }
    assert!(decode_body(&encoded(&b), u32::MAX).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_body_with_group_tags_is_total(
        n in 0u32..8,
        raw in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(64), any::<u8>()], 0..320),
        limit in any::<u32>(),
    ) {
        let _ = decode_body(&body(n, &raw), limit);
        let _ = decode_body(&raw, limit);
    }

    /// Whatever the builder is fed, its body decodes to exactly the runs it was given.
    #[test]
    fn builder_with_groups_round_trips(
        ops in proptest::collection::vec((0u64..3, 0u64..3, any::<bool>()), 0..64),
    ) {
        let mut b = FooterBuilder::new();
        let mut off = HEADER_LEN as u32;
        let mut want: Vec<(u64, u64, u32)> = Vec::new();
        let mut records = 0;
        for (group, term, record) in ops {
            off += 8;
            if record {
                b.push_record(off);
                records += 1;
            } else {
                let index = want.len() as u64 + 1;
                b.push_entry_in(group, index, term, off);
                want.push((group, index, off));
            }
        }
        let body = encoded(&b);
        let (items, n) = decode_body(&body, u32::MAX).expect("builder output decodes");
        prop_assert_eq!(n, want.len() as u64);
        let mut got = Vec::new();
        let mut n_records = 0;
        for i in &items {
            match i {
                Item::Run(r) => {
                    got.extend(r.offsets().enumerate().map(|(k, o)| (r.group, r.first + k as u64, o)));
                }
                Item::Record { .. } => n_records += 1,
            }
        }
        prop_assert_eq!(got, want);
        prop_assert_eq!(n_records, records);
    }

    /// Damage anywhere in a sealed image with group runs: refused, or the same items.
    #[test]
    fn read_footer_with_groups_never_returns_damaged_items(
        flips in proptest::collection::vec((0usize..SIZE, 1u8..=255), 1..4),
    ) {
        let good = sealed_in(&mixed());
        let want = read_footer(&good, SIZE as u64, TAG).expect("valid").items;
        let mut b = good.clone();
        for (at, x) in flips {
            b[at] ^= x;
        }
        if let Ok(f) = read_footer(&b, SIZE as u64, TAG) {
            prop_assert_eq!(f.items, want);
        }
    }
}
