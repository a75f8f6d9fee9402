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
//! A `file` CSV has the columns of `bigquery-public-data.samples.shakespeare`:
//! `word,word_count,corpus,corpus_date` (extra columns are ignored, order
//! is taken from the header). The compiled-in table holds the same counts one
//! row per word, `word,<corpus>,...`, each cell the word's `word_count` in that
//! corpus or empty; that layout compresses to half the size (docs/data.md).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::trace::TraceContext;

/// `data/sample-by-word.csv.gz`, built by `scripts/make-sample-data.py` from
/// the same rows as `data/shakespeare.csv.gz`: one row per word, a column per
/// corpus, read by [`scan_by_word`]. Kept compressed in the binary and
/// decompressed while scanning, so the table never sits in memory as a whole.
static SAMPLE_CSV_GZ: &[u8] = include_bytes!("../data/sample-by-word.csv.gz");

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
        // Decompressing and scanning ~35k rows of 42 columns is CPU work:
        // keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            scan_by_word(flate2::read::GzDecoder::new(SAMPLE_CSV_GZ), &word, word_match)
        })
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
    let headers = header(reader)?;
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

/// Both layouts' header row, and their one message for a broken one.
fn header<R: Read>(reader: &mut csv::Reader<R>) -> Result<&csv::ByteRecord> {
    reader.byte_headers().map_err(|e| Error::Data(format!("unreadable header: {e}")))
}

/// The next row into `record`; `false` at the end.
fn next_record<R: Read>(reader: &mut csv::Reader<R>, record: &mut csv::ByteRecord) -> Result<bool> {
    reader.read_byte_record(record).map_err(|e| Error::Data(e.to_string()))
}

fn field<'r>(record: &'r csv::ByteRecord, index: usize, line: u64, name: &str) -> Result<&'r str> {
    let raw = record.get(index).ok_or_else(|| Error::Data(format!("line {line}: missing {name}")))?;
    std::str::from_utf8(raw).map_err(|_| Error::Data(format!("line {line}: {name} is not UTF-8")))
}

/// The count in column `index`, called `name` in errors.
fn count(record: &csv::ByteRecord, index: usize, line: u64, name: &str) -> Result<u64> {
    let raw = field(record, index, line, name)?;
    raw.parse().map_err(|_| Error::Data(format!("line {line}: {name} {raw:?} is not a whole number")))
}

/// Whether a row's word is WORD under `word_match`.
fn matcher(word: &str, word_match: WordMatch) -> impl Fn(&[u8]) -> bool + '_ {
    let wanted_lower = word.to_lowercase();
    move |candidate: &[u8]| match word_match {
        WordMatch::Exact => candidate == word.as_bytes(),
        WordMatch::IgnoreCase => std::str::from_utf8(candidate).is_ok_and(|c| c.to_lowercase() == wanted_lower),
    }
}

fn add(totals: &mut BTreeMap<String, u64>, corpus: &str, n: u64) {
    let total = totals.entry(corpus.to_owned()).or_default();
    *total = total.saturating_add(n);
}

fn answer(totals: BTreeMap<String, u64>) -> Counts {
    Counts::new(totals.into_iter().map(|(corpus, total_words)| Row { corpus, total_words }).collect())
}

/// Checks that every row parses: header columns, UTF-8, numeric counts,
/// non-empty word and corpus.
pub fn validate(input: impl Read) -> Result<()> {
    let mut reader = reader(input);
    let cols = columns(&mut reader)?;
    let mut record = csv::ByteRecord::new();
    let mut rows = 0u64;
    while next_record(&mut reader, &mut record)? {
        let line = record.position().map_or(0, |p| p.line());
        count(&record, cols.word_count, line, "word_count")?;
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
    let matches = matcher(word, word_match);

    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut record = csv::ByteRecord::new();
    while next_record(&mut reader, &mut record)? {
        if !record.get(cols.word).is_some_and(&matches) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let n = count(&record, cols.word_count, line, "word_count")?;
        let corpus = field(&record, cols.corpus, line, "corpus")?;
        add(&mut totals, corpus, n);
    }
    Ok(answer(totals))
}

/// The query over the by-word layout of the compiled-in table: header
/// `word,<corpus>,...`, one row per word, each cell the word's count in that
/// corpus or empty. Sums the non-empty cells per corpus over the rows whose
/// word matches (with [`WordMatch::IgnoreCase`], `The` and `the` are two
/// rows), so it answers exactly as [`scan`] does over the same counts in the
/// long layout.
fn scan_by_word(input: impl Read, word: &str, word_match: WordMatch) -> Result<Counts> {
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for_each_count(input, matcher(word, word_match), |_, corpus, n| add(&mut totals, corpus, n))?;
    Ok(answer(totals))
}

/// Reads the by-word layout and calls `each(word, corpus, count)` for every
/// non-empty cell of the rows whose word `matches` accepts.
fn for_each_count(
    input: impl Read,
    matches: impl Fn(&[u8]) -> bool,
    mut each: impl FnMut(&str, &str, u64),
) -> Result<()> {
    let mut reader = reader(input);
    let headers = header(&mut reader)?.clone();
    if headers.get(0) != Some(b"word".as_slice()) {
        return Err(Error::Data("line 1: the first column is not \"word\"".into()));
    }
    let corpora = (1..headers.len())
        .map(|i| match field(&headers, i, 1, "corpus")? {
            "" => Err(Error::Data(format!("line 1: column {} has no corpus name", i + 1))),
            corpus => Ok(corpus),
        })
        .collect::<Result<Vec<&str>>>()?;

    let mut record = csv::ByteRecord::new();
    while next_record(&mut reader, &mut record)? {
        if !record.get(0).is_some_and(&matches) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let word = field(&record, 0, line, "word")?;
        for (i, corpus) in corpora.iter().enumerate() {
            if !record.get(i + 1).is_some_and(<[u8]>::is_empty) {
                each(word, corpus, count(&record, i + 1, line, corpus)?);
            }
        }
    }
    Ok(())
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

    /// The same rows in the long layout, which `file`, the fakes and the
    /// emulator serve.
    static SHAKESPEARE_CSV_GZ: &[u8] = include_bytes!("../data/shakespeare.csv.gz");

    const BY_WORD: &str = "word,hamlet,kinglear,macbeth\n\
        The,3,,\n\
        \"a,b\",,1,\n\
        tea,1,,\n\
        the,15,25,10\n";

    #[tokio::test]
    async fn the_sample_is_valid_and_answers_for_the() {
        validate(flate2::read::GzDecoder::new(SHAKESPEARE_CSV_GZ)).expect("the long table is valid");
        let long = |word_match| scan(flate2::read::GzDecoder::new(SHAKESPEARE_CSV_GZ), "the", word_match);

        let counts = SampleSource.counts("the", WordMatch::Exact, &TraceContext::default()).await.expect("sample");
        let folded = SampleSource.counts("THE", WordMatch::IgnoreCase, &TraceContext::default()).await.expect("sample");

        assert!(counts.rows.len() > 30, "the appears in most works: {:?}", counts.rows.len());
        assert!(counts.rows.iter().any(|r| r.corpus == "hamlet"));
        assert!(counts.rows.windows(2).all(|w| w[0].total_words >= w[1].total_words));
        assert_eq!(counts, long(WordMatch::Exact).expect("scan"));
        assert_eq!(folded, long(WordMatch::IgnoreCase).expect("scan"));
        assert!(folded.total() > counts.total(), "The and THE count too");
    }

    #[test]
    fn the_sample_holds_exactly_the_counts_of_the_long_table() {
        // Arrange: every (word, corpus) -> count of each file, in one pass each.
        let mut long: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut reader = reader(flate2::read::GzDecoder::new(SHAKESPEARE_CSV_GZ));
        let cols = columns(&mut reader).expect("long header");
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).expect("long row") {
            let line = record.position().map_or(0, |p| p.line());
            let key = (
                field(&record, cols.word, line, "word").expect("word").to_owned(),
                field(&record, cols.corpus, line, "corpus").expect("corpus").to_owned(),
            );
            let n = count(&record, cols.word_count, line, "word_count").expect("count");
            assert_eq!(long.insert(key.clone(), n), None, "{key:?} twice in the long table");
        }

        // Act: read the compiled-in table with the sample's own reader.
        let mut wide: BTreeMap<(String, String), u64> = BTreeMap::new();
        for_each_count(
            flate2::read::GzDecoder::new(SAMPLE_CSV_GZ),
            |_| true,
            |word, corpus, n| {
                let key = (word.to_owned(), corpus.to_owned());
                assert_eq!(wide.insert(key.clone(), n), None, "{key:?} twice in the sample");
            },
        )
        .expect("the compiled-in sample is valid");

        // Assert
        assert!(long.len() > 100_000, "read all of data/shakespeare.csv.gz: {} rows", long.len());
        let first_difference =
            long.keys().chain(wide.keys()).find(|&k| long.get(k) != wide.get(k)).map(|k| (k, long.get(k), wide.get(k)));
        assert_eq!(first_difference, None, "((word, corpus), long table, sample)");
    }

    #[test]
    fn scan_by_word_sums_the_matching_rows_per_corpus() {
        let exact = scan_by_word(BY_WORD.as_bytes(), "the", WordMatch::Exact).expect("scan");
        let folded = scan_by_word(BY_WORD.as_bytes(), "THE", WordMatch::IgnoreCase).expect("scan");
        let quoted = scan_by_word(BY_WORD.as_bytes(), "a,b", WordMatch::Exact).expect("scan");
        let unknown = scan_by_word(BY_WORD.as_bytes(), "zebra", WordMatch::Exact).expect("scan");

        assert_eq!(rows(&exact), [("kinglear", 25), ("hamlet", 15), ("macbeth", 10)]);
        assert_eq!(rows(&folded), [("kinglear", 25), ("hamlet", 18), ("macbeth", 10)]);
        assert_eq!(rows(&quoted), [("kinglear", 1)]);
        assert!(unknown.rows.is_empty());
    }

    #[test]
    fn scan_by_word_answers_as_scan_does_over_the_long_layout() {
        for (word, word_match) in [("the", WordMatch::Exact), ("THE", WordMatch::IgnoreCase), ("tea", WordMatch::Exact)]
        {
            let long = scan(CSV.as_bytes(), word, word_match).expect("scan");

            let wide = scan_by_word(BY_WORD.as_bytes(), word, word_match).expect("scan_by_word");

            assert_eq!(wide, long, "{word} {word_match:?}");
        }
    }

    #[test]
    fn scan_by_word_rejects_malformed_input_with_a_reason() {
        let cases = [
            ("word,hamlet\nthe,many\n", "line 2: hamlet \"many\" is not a whole number"),
            ("word,hamlet\nthe,-1\n", "not a whole number"),
            ("word,hamlet,macbeth\nthe,1\n", "found record with 2 fields"),
            ("corpus,word\nhamlet,the\n", "first column is not \"word\""),
            ("word,,macbeth\nthe,1,2\n", "column 2 has no corpus name"),
        ];
        for (csv, expected) in cases {
            let err = scan_by_word(csv.as_bytes(), "the", WordMatch::Exact).expect_err(csv);
            assert!(err.to_string().contains(expected), "{csv:?}: {err}");
        }
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
