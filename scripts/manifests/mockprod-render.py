#!/usr/bin/env python3
"""Turn raw-yaml Deployments into what `podman kube play` runs in mock-production.

    mockprod-render.py MANIFEST_DIR IMAGE_REF OUT_FILE [WORD...]
    mockprod-render.py --dir MANIFEST_DIR IMAGE_REF OUT_DIR   (all files; kind)

Takes the Deployments of MANIFEST_DIR (raw-yaml/ or the deploy step's
rendered copy of it) for the given WORDs (default: all), and changes exactly
two things in each, nothing else:

  * the container image  -> IMAGE_REF (the verified local image)
  * SOURCE=bigquery      -> SOURCE=sample (no BigQuery here)

Writes OUT_FILE (the transformed Deployments) and OUT_FILE.orig (the same
Deployments untouched) and prints their unified diff, so every run shows that
these are the only differences. Fails if a Deployment has not exactly one
image line and one SOURCE=bigquery setting, or if a WORD has no Deployment.

Line-based and stdlib only, like the deploy step's render.py: the documents
are generated (scripts/manifests/generate.py) in one known layout, and the
assertions above refuse anything else rather than guess.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

IMAGE_RE = re.compile(r"^(?P<lead>\s*(?:-\s+)?image:\s*)\S+\s*$")
SOURCE_NAME_RE = re.compile(r"^(?P<indent>\s*)-\s+name:\s*SOURCE\s*$")
SOURCE_VALUE_RE = re.compile(r"^(?P<lead>\s*value:\s*)(?P<q>[\"']?)bigquery(?P=q)\s*$")
WORD_RE = re.compile(r"^\s*-\s+name:\s*WORD\s*\n\s*value:\s*[\"']?(?P<word>[^\"'\s]+)", re.M)


class RenderError(Exception):
    pass


def documents(manifest_dir: Path) -> list[tuple[str, str]]:
    """(file name, document text) for every document, in kubectl's order."""
    files = sorted(p for p in manifest_dir.iterdir()
                   if p.is_file() and p.suffix in (".yaml", ".yml"))
    if not files:
        raise RenderError(f"no manifests in {manifest_dir}")
    docs = []
    for path in files:
        for doc in re.split(r"(?m)^---[ \t]*\n", path.read_text()):
            body = "\n".join(line for line in doc.splitlines() if not line.startswith("#"))
            if body.strip():
                docs.append((path.name, doc if doc.endswith("\n") else doc + "\n"))
    return docs


def transform(doc: str, image: str, where: str) -> str:
    lines = doc.splitlines(keepends=True)
    images = [i for i, line in enumerate(lines) if IMAGE_RE.match(line)]
    if len(images) != 1:
        raise RenderError(f"{where}: expected exactly one image line, found {len(images)}")
    i = images[0]
    lines[i] = IMAGE_RE.match(lines[i])["lead"] + image + "\n"

    sources = [i for i, line in enumerate(lines) if SOURCE_NAME_RE.match(line)]
    if len(sources) != 1:
        raise RenderError(f"{where}: expected exactly one SOURCE variable, found {len(sources)}")
    j = sources[0] + 1
    match = SOURCE_VALUE_RE.match(lines[j]) if j < len(lines) else None
    if not match:
        raise RenderError(f"{where}: SOURCE is not set to bigquery on the line after its name")
    lines[j] = f"{match['lead']}{match['q']}sample{match['q']}\n"
    return "".join(lines)


def render(manifest_dir: Path, image: str, words: list[str]) -> tuple[str, str, list[str]]:
    original, changed, found = [], [], []
    for name, doc in documents(manifest_dir):
        if not re.search(r"(?m)^kind:\s*Deployment\s*$", doc):
            continue
        m = WORD_RE.search(doc)
        word = m["word"] if m else None
        if words and word not in words:
            continue
        where = f"{name}: Deployment for WORD={word}"
        original.append(doc)
        changed.append(transform(doc, image, where))
        found.append(word)
    missing = [w for w in words if w not in found]
    if missing:
        raise RenderError(f"no Deployment in {manifest_dir} for WORD {', '.join(missing)}")
    if not found:
        raise RenderError(f"no Deployments in {manifest_dir}")
    join = lambda docs: "".join("---\n" + d for d in docs)  # noqa: E731
    return join(original), join(changed), found


def render_dir(manifest_dir: Path, image: str, out_dir: Path) -> list[str]:
    """Copy every manifest file to out_dir with all Deployments transformed
    (the kind path: the whole folder, the same two changes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    words = []
    by_file: dict[str, list[str]] = {}
    for name, doc in documents(manifest_dir):
        if re.search(r"(?m)^kind:\s*Deployment\s*$", doc):
            m = WORD_RE.search(doc)
            words.append(m["word"] if m else "?")
            doc = transform(doc, image, f"{name}: Deployment")
        by_file.setdefault(name, []).append(doc)
    if not words:
        raise RenderError(f"no Deployments in {manifest_dir}")
    for name, docs in by_file.items():
        (out_dir / name).write_text("".join("---\n" + d for d in docs))
    return words


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--dir":
        try:
            words = render_dir(Path(argv[1]), argv[2], Path(argv[3]))
        except RenderError as e:
            print(f"mockprod-render: {e}", file=sys.stderr)
            return 1
        print(f"mockprod-render: {argv[3]}: every file of {argv[1]}, Deployments {' '.join(words)} "
              "with only image and SOURCE changed", file=sys.stderr)
        return 0
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    manifest_dir, image, out = Path(argv[0]), argv[1], Path(argv[2])
    words = argv[3:]
    try:
        before, after, found = render(manifest_dir, image, words)
    except RenderError as e:
        print(f"mockprod-render: {e}", file=sys.stderr)
        return 1
    out.write_text(after)
    out.with_name(out.name + ".orig").write_text(before)
    diff = difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                f"{manifest_dir} (Deployments)", "podman kube play input")
    sys.stdout.writelines(diff)
    print(f"mockprod-render: {len(found)} Deployment(s): {' '.join(found)}; "
          "only image and SOURCE differ", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
