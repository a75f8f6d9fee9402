#!/usr/bin/env python3
"""Validate the admission policies in cosign/policy/ against the upstream
CRD schemas of the controllers they are written for, offline.

    check-crds.py [--crds DIR] [POLICY.yaml ...]

DIR (default ../shared/crds beside the repository, or $WORDCOUNT_CRDS) holds
CustomResourceDefinition files named <controller>-v<version>-<anything>.yaml.
Every object in every policy file must match a CRD (group, version, kind) of
at least one controller release there, and must be valid against EVERY
release of that controller in DIR: a policy that the oldest supported
Kyverno would reject is as broken as one with a typo.

Validation follows the API server's structural-schema rules, not plain JSON
Schema: a field the schema does not declare is an error (the API server
prunes it silently, or rejects it under `kubectl apply --validate=strict`),
unless the schema says x-kubernetes-preserve-unknown-fields. Types, enums,
required fields and patterns are checked by jsonschema (Draft 4, which
OpenAPI v3 schemas are a dialect of). `metadata` is ObjectMeta, checked
against the few fields a policy may set. CEL rules (x-kubernetes-validations)
would be skipped; the CRDs checked here have none, and the gate fails if one
appears, so nothing is silently unchecked.

Exit 0: every object valid for every release; 1: problems (one line each,
with the path of the field); 2: usage or missing CRDs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRDS = Path(os.environ.get("WORDCOUNT_CRDS", ROOT.parent / "shared" / "crds"))
FILE_RE = re.compile(r"^(?P<controller>[a-z0-9-]+?)-v(?P<version>\d+\.\d+\.\d+)-")
METADATA_FIELDS = {"name", "labels", "annotations"}


def structural(schema: dict) -> dict:
    """The schema as the API server applies it: undeclared fields refused."""
    if not isinstance(schema, dict):
        return schema
    if "x-kubernetes-validations" in schema:
        raise ValueError("schema has CEL rules (x-kubernetes-validations), which this gate cannot evaluate")
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    for key in ("properties", "patternProperties"):
        if key in out:
            out[key] = {k: structural(v) for k, v in out[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = structural(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [structural(s) for s in out[key]]
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("type") == "object" and not schema.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def load_crds(crd_dir: Path) -> dict[tuple[str, str, str], list[tuple[str, dict]]]:
    """(group, version, kind) -> [(\"kyverno v1.13.0\", structural schema), ...]"""
    found: dict[tuple[str, str, str], list[tuple[str, dict]]] = {}
    for path in sorted(crd_dir.glob("*.y*ml")):
        m = FILE_RE.match(path.name)
        if not m:
            continue
        release = f"{m['controller']} v{m['version']}"
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for ver in spec["versions"]:
                if not ver.get("served", True):
                    continue
                schema = dict(ver["schema"]["openAPIV3Schema"])
                props = dict(schema.get("properties", {}))
                props.pop("metadata", None)  # ObjectMeta: checked by metadata_errors
                # Every object may carry these, declared in its CRD or not.
                props.setdefault("apiVersion", {"type": "string"})
                props.setdefault("kind", {"type": "string"})
                schema["properties"] = props
                key = (spec["group"], ver["name"], spec["names"]["kind"])
                found.setdefault(key, []).append((release, structural(schema)))
    return found


def where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".") or "(root)"


def metadata_errors(meta: object) -> list[str]:
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return ["metadata.name: required"]
    errs = [f"metadata.{k}: unknown or not for a policy file" for k in sorted(set(meta) - METADATA_FIELDS)]
    for k in ("labels", "annotations"):
        v = meta.get(k, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            errs.append(f"metadata.{k}: must map strings to strings")
    return errs


def check_object(obj: dict, crds: dict) -> tuple[list[str], list[str]]:
    """-> (problems, releases it was validated against)."""
    api = str(obj.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    kind = obj.get("kind")
    schemas = crds.get((group, version, kind), [])
    if not schemas:
        known = ", ".join(sorted(f"{g}/{v} {k}" for g, v, k in crds))
        return [f"{api} {kind}: no CRD for it in the reference set ({known})"], []
    problems = metadata_errors(obj.get("metadata"))
    body = {k: v for k, v in obj.items() if k != "metadata"}
    for release, schema in schemas:
        validator = jsonschema.Draft4Validator(schema)
        for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            problems.append(f"{release}: {where(e.absolute_path)}: {e.message}")
    return problems, [r for r, _ in schemas]


def check_files(files: list[Path], crds: dict) -> list[str]:
    problems: list[str] = []
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        if not docs:
            problems.append(f"{path}: no objects")
        for doc in docs:
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
            if not isinstance(doc, dict):
                problems.append(f"{path}: an object is not a mapping")
                continue
            errs, releases = check_object(doc, crds)
            problems += [f"{path.name} {doc.get('kind')}/{name}: {e}" for e in errs]
            if not errs:
                print(f"check-crds: ok: {path.name} {doc.get('kind')}/{name} ({', '.join(releases)})")
    return problems


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crds", type=Path, default=DEFAULT_CRDS)
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    try:
        crds = load_crds(args.crds)
    except (OSError, ValueError) as e:
        print(f"check-crds: {e}", file=sys.stderr)
        return 2
    if not crds:
        print(f"check-crds: no CRDs named <controller>-v<X.Y.Z>-*.yaml in {args.crds}", file=sys.stderr)
        return 2
    files = args.files or sorted((ROOT / "cosign" / "policy").glob("*.yaml"))
    problems = check_files(files, crds)
    for p in problems:
        print(f"check-crds: {p}", file=sys.stderr)
    if problems:
        print(f"check-crds: FAILED, {len(problems)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
