//! The format v2 fixture (seal-time footers in its sealed chunks), written by the code that
//! first wrote format v2; see `fixtures.rs` for the rule and the standard content.

use crate::fixtures::{check_format_fixture, write_format_fixture};

/// The fixture's directory under `tests/fixtures/`.
const NAME: &str = "format-v2-a0de64b";

#[test]
#[ignore = "writes the format v2 fixture; run once, by the code that first writes v2"]
fn write_format_v2_fixture() {
    write_format_fixture(2, NAME);
}

#[test]
fn format_v2_fixture_opens_reads_and_takes_writes() {
    check_format_fixture(NAME, 2);
}

/// Every sealed chunk of the fixture (all but the newest) ends in a footer that validates.
#[test]
fn format_v2_fixtures_sealed_chunks_have_footers() {
    use chunkwal::format::{read_footer, ChunkHeader};
    let mut chunks: Vec<_> = std::fs::read_dir(crate::fixtures::fixture(NAME))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "chunk"))
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 3, "the fixture spans chunks");
    for c in &chunks[..chunks.len() - 1] {
        let b = std::fs::read(c).unwrap();
        let h = ChunkHeader::decode(&b).unwrap();
        assert_eq!(h.version, 2);
        let f = read_footer(&b, h.chunk_size, h.epoch_tag())
            .unwrap_or_else(|e| panic!("{}: {e}", c.display()));
        assert!(!f.items.is_empty(), "{}", c.display());
    }
}
