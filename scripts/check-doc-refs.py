#!/usr/bin/env python3
"""Fails if a document names a repository path or a `make` target that does
not exist. Usage: check-doc-refs.py FILE...

Checked: markdown links to relative files, `code` spans holding `make
TARGET...`, and words in `code` spans that are repository paths: a path with
a slash whose first part is in the repository root (`src/...`, `.ci/run`)
or a name of the Makefile's own kind of root file (`Cargo.toml`, `Dockerfile`).
Not checked: other names (`/hello`, `logging.googleapis.com/trace`),
placeholders (`<...>`, `$VAR`, globs) and build outputs under target/.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = set(re.findall(r"^([a-zA-Z0-9_-]+):", (ROOT / "Makefile").read_text(), re.M))
TOP = {p.name for p in ROOT.iterdir()} - {"target"}
ROOT_FILE = re.compile(r"^(Cargo\.toml|Cargo\.lock|Dockerfile|Makefile|[A-Z]+\.md|deny\.toml|compose\.yaml)$")

errors = []
for doc in map(Path, sys.argv[1:]):
    text = doc.read_text()
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+:", link) and not (doc.parent / link).exists():
            errors.append(f"{doc}: link to missing {link}")
    for span in re.findall(r"`([^`\n]+)`", text):
        for cmd in re.findall(r"\bmake ((?:[a-z0-9-]+ ?)+)", span):
            errors += [f"{doc}: no Makefile target `{t}`" for t in cmd.split() if t not in TARGETS]
        for word in span.split():
            word = word.rstrip(",;:.)")
            path = word.split(":", 1)[0] if "/" in word else word
            if (("/" in path and path.split("/")[0] in TOP) or ROOT_FILE.match(path)) \
                    and not re.search(r"[<>$*{}=\"']", path) and not (ROOT / path).exists():
                errors.append(f"{doc}: names missing path {path}")
print("\n".join(errors) or f"ok: every path and make target named in {', '.join(sys.argv[1:])} exists")
sys.exit(1 if errors else 0)
