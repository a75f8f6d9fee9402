#!/usr/bin/env python3
"""Write the BigQuery emulator's seed file from data/shakespeare.csv.gz.

    emulator-data.py [OUT]    (default: .tmp/bigquery-emulator/data.yaml)

goccy/bigquery-emulator loads initial tables from YAML (--data-from-yaml):
projects -> datasets -> tables with columns and rows. The emulator serves
only the project it is started with (--project), so the table is created as
wordcount-dev.samples.shakespeare with the public table's schema
(word STRING, word_count INTEGER, corpus STRING, corpus_date INTEGER), and
compose.yaml points BIGQUERY_PROJECT/BIGQUERY_TABLE at it.

Stdlib only; strings are written as JSON strings, which YAML reads verbatim
(words like 'Tis or "No" would otherwise need YAML quoting rules).
"""

import csv
import gzip
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "data" / "shakespeare.csv.gz"
PROJECT = "wordcount-dev"  # keep equal to EMULATOR_PROJECT in generate.py
COLUMNS = [("word", "STRING"), ("word_count", "INTEGER"), ("corpus", "STRING"), ("corpus_date", "INTEGER")]


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".tmp" / "bigquery-emulator" / "data.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(SOURCE, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != [c for c, _ in COLUMNS]:
            print(f"emulator-data: unexpected header {reader.fieldnames} in {SOURCE}", file=sys.stderr)
            return 1
        buf = io.StringIO()
        buf.write("projects:\n")
        buf.write(f"  - id: {PROJECT}\n")
        buf.write("    datasets:\n      - id: samples\n        tables:\n          - id: shakespeare\n")
        buf.write("            columns:\n")
        for name, typ in COLUMNS:
            buf.write(f"              - name: {name}\n                type: {typ}\n                mode: REQUIRED\n")
        buf.write("            data:\n")
        rows = 0
        for row in reader:
            buf.write(f"              - word: {json.dumps(row['word'])}\n"
                      f"                word_count: {int(row['word_count'])}\n"
                      f"                corpus: {json.dumps(row['corpus'])}\n"
                      f"                corpus_date: {int(row['corpus_date'])}\n")
            rows += 1
    out.write_text(buf.getvalue())
    print(f"emulator-data: {rows} rows -> {out} (table {PROJECT}.samples.shakespeare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
