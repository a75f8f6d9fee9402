#!/usr/bin/env python3
"""The admission policies, cosign/verify and the release workflow must agree
on who signs. cosign/identity.env is the source of truth; YAML cannot include
it, so this check fails when a policy drifts from it.

Checks every cosign/policy/*.yaml:
  * each subjectRegExp equals WORDCOUNT_IDENTITY_REGEXP, each issuer equals
    WORDCOUNT_OIDC_ISSUER;
  * each image glob / imageReference is the release repository
    WORDCOUNT_IMAGE_REPOSITORY (plus a wildcard);
  * each embedded public key equals cosign/cosign.pub;
  * keyless policies exist for both policy-controller and Kyverno.
And, once it exists, that .github/workflows/release.yml can produce that
identity: the file path matches, it runs on tags and may mint OIDC tokens.
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def identity() -> dict:
    out = subprocess.run(
        [
            "bash",
            "-c",
            'source cosign/identity.env; for v in WORDCOUNT_GITHUB_REPOSITORY '
            'WORDCOUNT_RELEASE_WORKFLOW WORDCOUNT_OIDC_ISSUER WORDCOUNT_IDENTITY_REGEXP '
            'WORDCOUNT_IMAGE_REPOSITORY; do printf "%s=%s\\n" "$v" "${!v}"; done',
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},  # no inherited overrides: check the file
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def scalar(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def main() -> int:
    ident = identity()
    pub = (ROOT / "cosign/cosign.pub").read_text().strip()
    errors = []
    keyless = set()
    policies = sorted((ROOT / "cosign/policy").glob("*.yaml"))
    if not policies:
        errors.append("no policies in cosign/policy/")
    for path in policies:
        text = path.read_text()
        name = path.relative_to(ROOT)
        for m in re.finditer(r"subjectRegExp:\s*(.+)", text):
            if scalar(m[1]) != ident["WORDCOUNT_IDENTITY_REGEXP"]:
                errors.append(f"{name}: subjectRegExp {scalar(m[1])} != identity.env")
            keyless.add("kyverno" if "kyverno.io/" in text else "policy-controller")
        for m in re.finditer(r"issuer:\s*(.+)", text):
            if scalar(m[1]) != ident["WORDCOUNT_OIDC_ISSUER"]:
                errors.append(f"{name}: issuer {scalar(m[1])} != identity.env")
        images = [scalar(m) for m in re.findall(r"glob:\s*(.+)", text)]
        for block in re.findall(r"imageReferences:[ \t]*\n((?:[ \t]+-[ \t]*.+\n)+)", text):
            images += [scalar(m) for m in re.findall(r"-\s*(.+)", block)]
        if not images:
            errors.append(f"{name}: names no images")
        for image in images:
            if image.rstrip("*") != ident["WORDCOUNT_IMAGE_REPOSITORY"]:
                errors.append(
                    f"{name}: image pattern {image} is not {ident['WORDCOUNT_IMAGE_REPOSITORY']}*"
                )
        for block in re.findall(
            r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", text, re.S
        ):
            key = "\n".join(line.strip() for line in block.splitlines())
            if key != pub:
                errors.append(f"{name}: embedded public key differs from cosign/cosign.pub")
    for engine in ("policy-controller", "kyverno"):
        if engine not in keyless:
            errors.append(f"no keyless {engine} policy in cosign/policy/")

    workflow = ROOT / ident["WORDCOUNT_RELEASE_WORKFLOW"]
    if workflow.exists():
        text = workflow.read_text()
        if not re.search(r"^\s*tags:", text, re.M):
            errors.append(f"{workflow.name}: not triggered by tags, so no refs/tags/v* identity")
        if "id-token: write" not in text:
            errors.append(f"{workflow.name}: no `id-token: write`, so no keyless signature")
        if "cosign sign" not in text and "cosign-sign" not in text:
            errors.append(f"{workflow.name}: does not sign with cosign")
    else:
        print(f"check-policy-identity: {workflow.relative_to(ROOT)} does not exist yet; not checked")

    for error in errors:
        print(f"check-policy-identity: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
