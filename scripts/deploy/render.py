#!/usr/bin/env python3
"""Rewrite every image reference of the service in a manifest folder to one
verified digest reference, into a separate output folder.

    render.py MANIFEST_DIR OUT_DIR IMAGE_NAME VERIFIED_REF

Only the top level of MANIFEST_DIR is read, as `kubectl apply -f DIR` does,
and only *.yaml, *.yml and *.json files are copied. An `image:` whose
repository's last path component is IMAGE_NAME (any registry, tag or digest)
becomes VERIFIED_REF. Any other image reference is an error: the deploy step
applies nothing it has not verified, so a sidecar or a typo'd name must fail
here instead of reaching the cluster unverified. Zero references is an error
too (nothing would be deployed from the verified image).

Line-based on purpose: no YAML library is needed on the deploy runner, and the
output stays byte-identical to the input apart from the image values, so a
reviewer can diff it. Flow-style (`{image: x}`) and JSON image keys are
detected and refused rather than half-handled.
"""

import pathlib
import re
import shutil
import sys

IMAGE_LINE = re.compile(
    r"""^(?P<lead>\s*(?:-\s+)?image:\s*)(?P<q>["']?)(?P<ref>[^"'\s#]+)(?P=q)(?P<tail>\s*(?:\#.*)?)$"""
)
# Any other spelling of an image key, to refuse what IMAGE_LINE cannot rewrite.
ANY_IMAGE_KEY = re.compile(r"""(^|[\s{,\-])["']?image["']?\s*:""")


def repo_name(ref: str) -> str:
    """Last path component of the repository, without tag or digest."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    src, out, image_name, verified = sys.argv[1:]
    src_dir, out_dir = pathlib.Path(src), pathlib.Path(out)
    if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", verified):
        print(f"render: {verified} is not a digest reference", file=sys.stderr)
        return 2
    files = sorted(
        p for p in src_dir.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json")
    )
    if not files:
        print(f"render: no manifests in {src_dir}", file=sys.stderr)
        return 1
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    substituted, problems = 0, []
    for path in files:
        # newline="": keep CRLF files CRLF, so only image values change.
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().splitlines(keepends=True)
        rendered = []
        for number, line in enumerate(lines, 1):
            body = line.rstrip("\r\n")
            ending = line[len(body):]
            match = IMAGE_LINE.match(body)
            if match and repo_name(match["ref"]) == image_name:
                body = f'{match["lead"]}{match["q"]}{verified}{match["q"]}{match["tail"]}'
                substituted += 1
            elif match:
                problems.append(
                    f"{path.name}:{number}: image {match['ref']} is not {image_name}; "
                    "only the verified image may be deployed"
                )
            elif ANY_IMAGE_KEY.search(body.split("#", 1)[0]):
                problems.append(
                    f"{path.name}:{number}: image reference in a form this step cannot "
                    f"rewrite: {body.strip()}"
                )
            rendered.append(body + ending)
        with open(out_dir / path.name, "w", encoding="utf-8", newline="") as f:
            f.write("".join(rendered))

    if substituted == 0:
        problems.append(f"no image reference to {image_name} found in {src_dir}")
    if problems:
        shutil.rmtree(out_dir)
        for problem in problems:
            print(f"render: NOT SUBSTITUTED: {problem}", file=sys.stderr)
        return 1
    print(
        f"render: {substituted} image reference(s) in {len(files)} file(s) -> {verified}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
