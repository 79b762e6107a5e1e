//! The one range convention of every read: a `RangeBounds<u64>` resolved against what the
//! log holds (see [`Reader::read`](super::Reader::read) for the rules).

use std::ops::{Bound, RangeBounds};

use crate::error::{Error, Result};

/// Resolve `range` against a log holding `held` (its first and last index, inclusive, or
/// `None` when it holds no entry) into the inclusive span `[from, through]` to read, or
/// `None` for an empty read.
///
/// - An unbounded side stands for the log's end on that side.
/// - A range that is empty once resolved (`5..5`, `7..=3`, `..0`, `5..` when the log ends
///   before 5, `..=3` when it starts after 3, any unbounded side on an empty log) reads
///   nothing: `Ok(None)`, never an error.
/// - Otherwise both ends must lie within the log: a start before the first held index
///   (purged, or never written) or an end past the last held index is
///   [`Error::OutOfRange`]. Nothing is allocated or visited before this check.
pub(crate) fn resolve(
    range: &impl RangeBounds<u64>,
    held: Option<(u64, u64)>,
) -> Result<Option<(u64, u64)>> {
    let from = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => held.map(|(first, _)| first),
    };
    let through = match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => held.map(|(_, last)| last),
    };
    let (Some(from), Some(through)) = (from, through) else {
        return Ok(None);
    };
    if from > through {
        return Ok(None);
    }
    match held {
        Some((first, last)) if first <= from && through <= last => Ok(Some((from, through))),
        _ => Err(out_of_range(from, through, held)),
    }
}

/// The error for a read of `[from, through]` from a log holding `held`.
pub(crate) fn out_of_range(from: u64, through: u64, held: Option<(u64, u64)>) -> Error {
    Error::OutOfRange {
        from,
        through,
        first: held.map(|h| h.0),
        last: held.map(|h| h.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: Option<(u64, u64)> = Some((5, 10));

    fn oor(r: Result<Option<(u64, u64)>>) -> Option<(u64, u64)> {
        match r {
            Err(Error::OutOfRange {
                from,
                through,
                first,
                last,
            }) => {
                assert_eq!((first, last), (HELD.map(|h| h.0), HELD.map(|h| h.1)));
                Some((from, through))
            }
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn every_bound_kind_resolves() {
        assert_eq!(resolve(&(5..11), HELD).unwrap(), Some((5, 10)));
        assert_eq!(resolve(&(5..=10), HELD).unwrap(), Some((5, 10)));
        assert_eq!(resolve(&(6..), HELD).unwrap(), Some((6, 10)));
        assert_eq!(resolve(&(..8), HELD).unwrap(), Some((5, 7)));
        assert_eq!(resolve(&(..=8), HELD).unwrap(), Some((5, 8)));
        assert_eq!(resolve(&(..), HELD).unwrap(), Some((5, 10)));
        let excl = (Bound::Excluded(5), Bound::Excluded(10));
        assert_eq!(resolve(&excl, HELD).unwrap(), Some((6, 9)));
    }

    #[test]
    fn empty_ranges_read_nothing_anywhere() {
        for r in [(7, 7), (100, 100), (0, 0), (3, 1)] {
            assert_eq!(resolve(&(r.0..r.1), HELD).unwrap(), None, "{r:?}");
        }
        assert_eq!(resolve(&(..0), HELD).unwrap(), None);
        assert_eq!(resolve(&(11..), HELD).unwrap(), None);
        assert_eq!(resolve(&(50..), HELD).unwrap(), None);
        assert_eq!(resolve(&(..=4), HELD).unwrap(), None);
        let past_max = (Bound::Excluded(u64::MAX), Bound::Unbounded);
        assert_eq!(resolve(&past_max, HELD).unwrap(), None);
        assert_eq!(resolve(&(..), None).unwrap(), None);
        assert_eq!(resolve(&(3..), None).unwrap(), None);
        assert_eq!(resolve(&(..=3), None).unwrap(), None);
    }

    #[test]
    fn bounds_outside_the_log_fail_with_the_requested_span() {
        assert_eq!(oor(resolve(&(4..8), HELD)), Some((4, 7)));
        assert_eq!(oor(resolve(&(0..), HELD)), Some((0, 10)));
        assert_eq!(oor(resolve(&(6..=11), HELD)), Some((6, 11)));
        assert_eq!(oor(resolve(&(..12), HELD)), Some((5, 11)));
        assert_eq!(oor(resolve(&(0..=u64::MAX), HELD)), Some((0, u64::MAX)));
        assert!(matches!(
            resolve(&(1..3), None),
            Err(Error::OutOfRange {
                from: 1,
                through: 2,
                first: None,
                last: None
            })
        ));
    }
}
