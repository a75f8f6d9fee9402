//! Where word counts come from.
//!
//! [`CountsSource`] is the one interface handlers and the cache see. This
//! module implements it for the table compiled into the binary (`sample`)
//! and for a CSV file (`file`); `bigquery` lives in its own module. All of
//! them answer the original service's query,
//! `SELECT corpus, SUM(word_count) AS total_words ... WHERE word = @word
//! GROUP BY corpus`, and [`Counts::new`] puts every answer into the same
//! order (total_words descending, then corpus ascending).
//!
//! The CSV has the columns of `bigquery-public-data.samples.shakespeare`:
//! `word,word_count,corpus,corpus_date` (extra columns are ignored, order
//! is taken from the header).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::trace::TraceContext;

/// `data/shakespeare.csv.gz`, built by `scripts/make-sample-data.py`. Kept
/// compressed in the binary and decompressed while scanning, so the table
/// never sits in memory as a whole.
static SAMPLE_CSV_GZ: &[u8] = include_bytes!("../data/shakespeare.csv.gz");

/// How a row's word is compared with WORD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WordMatch {
    /// Case-sensitive, like the original service
    Exact,
    /// Case-insensitive
    IgnoreCase,
}

impl WordMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            WordMatch::Exact => "exact",
            WordMatch::IgnoreCase => "ignore-case",
        }
    }
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub corpus: String,
    pub total_words: u64,
}

/// A source's answer for one word, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts {
    pub rows: Vec<Row>,
}

impl Counts {
    pub fn new(mut rows: Vec<Row>) -> Self {
        rows.sort_by(|a, b| b.total_words.cmp(&a.total_words).then_with(|| a.corpus.cmp(&b.corpus)));
        Counts { rows }
    }

    /// Saturating: counts come from a file or an upstream, and `sum` would
    /// panic on overflow in debug builds and wrap in release ones (the
    /// csv_loader and bigquery_response fuzz targets feed it such counts).
    pub fn total(&self) -> u64 {
        self.rows.iter().fold(0u64, |total, r| total.saturating_add(r.total_words))
    }
}

/// A source of per-corpus counts for a word.
#[async_trait]
pub trait CountsSource: Send + Sync + 'static {
    /// Short name used in metric labels, logs and the page (`sample`, `file`,
    /// `bigquery`).
    fn kind(&self) -> &'static str;

    /// Runs the query for `word`. `trace` is the context of the request that
    /// caused the query, for sources that propagate it upstream.
    async fn counts(&self, word: &str, word_match: WordMatch, trace: &TraceContext) -> Result<Counts>;
}

/// The table compiled into the binary.
pub struct SampleSource;

#[async_trait]
impl CountsSource for SampleSource {
    fn kind(&self) -> &'static str {
        "sample"
    }

    async fn counts(&self, word: &str, word_match: WordMatch, _trace: &TraceContext) -> Result<Counts> {
        let word = word.to_owned();
        // Decompressing and scanning ~165k rows is CPU work: keep it off the
        // async workers.
        tokio::task::spawn_blocking(move || scan(flate2::read::GzDecoder::new(SAMPLE_CSV_GZ), &word, word_match))
            .await
            .map_err(|e| Error::Data(format!("sample scan did not complete: {e}")))?
    }
}

/// A CSV file, read and validated once at start-up.
pub struct FileSource {
    csv: Vec<u8>,
}

impl FileSource {
    /// Reads `path` (gunzipping `*.gz`) and checks every row, so a broken
    /// file stops the process at start-up instead of failing later.
    pub fn open(path: &Path) -> Result<Self> {
        let problem = |p: String| Error::config("DATA_FILE", format!("{}: {p}", path.display()));
        let raw = std::fs::read(path).map_err(|e| problem(format!("cannot read: {e}")))?;
        let csv = if path.extension().is_some_and(|e| e == "gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice())
                .read_to_end(&mut out)
                .map_err(|e| problem(format!("not valid gzip: {e}")))?;
            out
        } else {
            raw
        };
        validate(csv.as_slice()).map_err(|e| problem(e.to_string()))?;
        Ok(FileSource { csv })
    }
}

#[async_trait]
impl CountsSource for FileSource {
    fn kind(&self) -> &'static str {
        "file"
    }

    async fn counts(&self, word: &str, word_match: WordMatch, _trace: &TraceContext) -> Result<Counts> {
        // The file is validated and small enough to scan inline; a copy-free
        // scan of a few MB takes milliseconds and happens once per TTL.
        scan(self.csv.as_slice(), word, word_match)
    }
}

/// Column positions found in the header.
struct Columns {
    word: usize,
    word_count: usize,
    corpus: usize,
}

fn columns(reader: &mut csv::Reader<impl Read>) -> Result<Columns> {
    let headers = reader.byte_headers().map_err(|e| Error::Data(format!("unreadable header: {e}")))?;
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| Error::Data(format!("header lacks the column {name:?}")))
    };
    Ok(Columns { word: find("word")?, word_count: find("word_count")?, corpus: find("corpus")? })
}

fn reader(input: impl Read) -> csv::Reader<impl Read> {
    csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input)
}

fn field<'r>(record: &'r csv::ByteRecord, index: usize, line: u64, name: &str) -> Result<&'r str> {
    let raw = record.get(index).ok_or_else(|| Error::Data(format!("line {line}: missing {name}")))?;
    std::str::from_utf8(raw).map_err(|_| Error::Data(format!("line {line}: {name} is not UTF-8")))
}

fn count(record: &csv::ByteRecord, cols: &Columns, line: u64) -> Result<u64> {
    let raw = field(record, cols.word_count, line, "word_count")?;
    raw.parse().map_err(|_| Error::Data(format!("line {line}: word_count {raw:?} is not a whole number")))
}

/// Checks that every row parses: header columns, UTF-8, numeric counts,
/// non-empty word and corpus.
pub fn validate(input: impl Read) -> Result<()> {
    let mut reader = reader(input);
    let cols = columns(&mut reader)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    while reader.read_byte_record(&mut record).map_err(|e| Error::Data(e.to_string()))? {
        let line = record.position().map_or(0, |p| p.line());
        count(&record, &cols, line)?;
        if field(&record, cols.word, line, "word")?.is_empty()
            || field(&record, cols.corpus, line, "corpus")?.is_empty()
        {
            return Err(Error::Data(format!("line {line}: empty word or corpus")));
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(Error::Data("no data rows".into()));
    }
    Ok(())
}

/// The query itself: sums `word_count` per corpus over the rows whose word
/// matches.
pub fn scan(input: impl Read, word: &str, word_match: WordMatch) -> Result<Counts> {
    let mut reader = reader(input);
    let cols = columns(&mut reader)?;
    let wanted_lower = word.to_lowercase();
    let matches = |candidate: &[u8]| match word_match {
        WordMatch::Exact => candidate == word.as_bytes(),
        WordMatch::IgnoreCase => std::str::from_utf8(candidate).is_ok_and(|c| c.to_lowercase() == wanted_lower),
    };

    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(|e| Error::Data(e.to_string()))? {
        if !record.get(cols.word).is_some_and(matches) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let n = count(&record, &cols, line)?;
        let corpus = field(&record, cols.corpus, line, "corpus")?;
        let total = totals.entry(corpus.to_owned()).or_default();
        *total = total.saturating_add(n);
    }
    Ok(Counts::new(totals.into_iter().map(|(corpus, total_words)| Row { corpus, total_words }).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "word,word_count,corpus,corpus_date\n\
        the,10,hamlet,1600\n\
        The,3,hamlet,1600\n\
        the,10,macbeth,1606\n\
        the,25,kinglear,1605\n\
        tea,1,hamlet,1600\n\
        the,5,hamlet,1600\n";

    fn rows(counts: &Counts) -> Vec<(&str, u64)> {
        counts.rows.iter().map(|r| (r.corpus.as_str(), r.total_words)).collect()
    }

    #[test]
    fn sums_per_corpus_and_orders_by_total_then_corpus() {
        let counts = scan(CSV.as_bytes(), "the", WordMatch::Exact).expect("scan");
        assert_eq!(rows(&counts), [("kinglear", 25), ("hamlet", 15), ("macbeth", 10)]);
        assert_eq!(counts.total(), 50);
    }

    #[test]
    fn ignore_case_folds_case() {
        let counts = scan(CSV.as_bytes(), "THE", WordMatch::IgnoreCase).expect("scan");
        assert_eq!(rows(&counts), [("kinglear", 25), ("hamlet", 18), ("macbeth", 10)]);
    }

    #[test]
    fn unknown_word_gives_no_rows() {
        let counts = scan(CSV.as_bytes(), "zebra", WordMatch::Exact).expect("scan");
        assert!(counts.rows.is_empty());
        assert_eq!(counts.total(), 0);
    }

    #[test]
    fn header_order_does_not_matter() {
        let csv = "corpus,word,word_count\nhamlet,the,2\n";
        let counts = scan(csv.as_bytes(), "the", WordMatch::Exact).expect("scan");
        assert_eq!(rows(&counts), [("hamlet", 2)]);
    }

    #[test]
    fn malformed_input_is_rejected_with_a_reason() {
        let cases = [
            ("word,corpus\nthe,hamlet\n", "word_count"),
            ("word,word_count,corpus\nthe,many,hamlet\n", "not a whole number"),
            ("word,word_count,corpus\nthe,1\n", "found record with 2 fields"),
            ("word,word_count,corpus\n", "no data rows"),
            ("word,word_count,corpus\n,1,hamlet\n", "empty word"),
        ];
        for (csv, expected) in cases {
            let err = validate(csv.as_bytes()).expect_err(csv);
            assert!(err.to_string().contains(expected), "{csv:?}: {err}");
        }
    }

    #[tokio::test]
    async fn the_sample_is_valid_and_answers_for_the() {
        validate(flate2::read::GzDecoder::new(SAMPLE_CSV_GZ)).expect("the compiled-in sample is valid");
        let counts = SampleSource.counts("the", WordMatch::Exact, &TraceContext::default()).await.expect("sample");
        assert!(counts.rows.len() > 30, "the appears in most works: {:?}", counts.rows.len());
        assert!(counts.rows.iter().any(|r| r.corpus == "hamlet"));
        assert!(counts.rows.windows(2).all(|w| w[0].total_words >= w[1].total_words));
    }

    #[test]
    fn file_source_reports_unreadable_and_malformed_files() {
        let dir = std::env::temp_dir().join(format!("wordcount-source-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.csv");
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, "word,word_count,corpus\nthe,x,hamlet\n").expect("write");
        let not_gzip = dir.join("plain.csv.gz");
        std::fs::write(&not_gzip, CSV).expect("write");

        for (path, expected) in [(&missing, "cannot read"), (&bad, "not a whole number"), (&not_gzip, "gzip")] {
            match FileSource::open(path) {
                Err(Error::Config { var, problem }) if var == "DATA_FILE" => {
                    assert!(problem.contains(expected), "{problem}")
                }
                Err(other) => panic!("{}: unexpected error {other}", path.display()),
                Ok(_) => panic!("{}: accepted", path.display()),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
