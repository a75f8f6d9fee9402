//! The CSV loader: `source::validate` (run on a DATA_FILE at start-up) and
//! `source::scan` (the query), on plain bytes and on gzip, as `FileSource`
//! reads them. (The compiled-in sample has its own layout and reader,
//! `scan_by_word`, which only ever sees that one committed file.)
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use wordcount::Error;
use wordcount::source::WordMatch;
use wordcount::source::{scan, validate};

/// Decompressed bytes beyond this are not looked at: a gzip bomb would only
/// measure the fuzzer's memory.
const MAX_INFLATED: u64 = 1 << 20;

/// The word of the first data row, so the scan has something to match.
fn first_word(csv: &[u8]) -> String {
    let mut lines = csv.split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    let at = header.split(|&b| b == b',').position(|h| h == b"word").unwrap_or(0);
    lines
        .next()
        .and_then(|row| row.split(|&b| b == b',').nth(at))
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .unwrap_or_else(|| "the".into())
}

fn check(csv: &[u8]) {
    let valid = validate(csv);
    if let Err(err) = &valid {
        assert!(matches!(err, Error::Data(_)), "validate: {err:?}");
    }
    for word in [first_word(csv), "the".to_owned()] {
        for word_match in [WordMatch::Exact, WordMatch::IgnoreCase] {
            match scan(csv, &word, word_match) {
                Ok(counts) => {
                    assert!(counts.rows.windows(2).all(|w| w[0].total_words >= w[1].total_words), "order");
                    // The page and the JSON show the total: it must not overflow.
                    let total = counts.total();
                    assert!(counts.rows.iter().all(|r| r.total_words <= total));
                    assert!(counts.rows.iter().all(|r| !r.corpus.is_empty() || valid.is_err()));
                }
                // A file that passed validation at start-up never fails a
                // query later.
                Err(err) => {
                    assert!(matches!(err, Error::Data(_)), "scan: {err:?}");
                    assert!(valid.is_err(), "validated file failed a scan for {word:?}: {err}");
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut inflated = Vec::new();
    if flate2::read::GzDecoder::new(data).take(MAX_INFLATED).read_to_end(&mut inflated).is_ok() {
        check(&inflated);
    }
});
