#!/usr/bin/env python3
"""Unit tests for check-pins.py: it must accept what we pin and refuse the rest.

Run: python3 -m unittest discover -s scripts/workflows -p 'test_*.py'
"""
from __future__ import annotations

import importlib.util
import tempfile
import textwrap
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_pins", HERE / "check-pins.py")
check_pins = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(check_pins)

SHA = "de0fac2e4500dabe0009e67214ff5f5447ce83dd"
SHA2 = "08c6903cd8c0fde910a37f88322edcfb5dd907a8"


def errors_for(step: str) -> list[str]:
    wf = textwrap.dedent(
        """\
        on: push
        jobs:
          a:
            runs-on: ubuntu-24.04
            steps:
        """
    ) + textwrap.indent(textwrap.dedent(step), "      ")
    return check_pins.check_text(wf, "wf.yml")[0]


class Accepts(unittest.TestCase):
    def test_full_sha_with_version_comment(self):
        self.assertEqual(errors_for(f"- uses: actions/checkout@{SHA} # v6.0.2\n"), [])

    def test_two_spaces_and_a_note_after_the_version(self):
        self.assertEqual(errors_for(f"- uses: actions/checkout@{SHA}  # v6.0.2 node24\n"), [])

    def test_sub_path_and_quoted_value(self):
        self.assertEqual(errors_for(f"- uses: 'github/codeql-action/init@{SHA}' # v4.32.4\n"), [])

    def test_local_action_and_docker_digest(self):
        self.assertEqual(errors_for("- uses: ./.github/actions/setup\n"), [])
        self.assertEqual(errors_for("- uses: docker://alpine@sha256:" + "a" * 64 + "\n"), [])

    def test_uses_in_a_comment_or_in_a_name_is_not_a_reference(self):
        self.assertEqual(errors_for("# uses: actions/checkout@v4\n- name: what it uses\n  run: true\n"), [])


class Refuses(unittest.TestCase):
    def assertRefused(self, step: str, fragment: str):
        errs = errors_for(step)
        self.assertEqual(len(errs), 1, errs)
        self.assertIn(fragment, errs[0])

    def test_tag(self):
        self.assertRefused("- uses: actions/checkout@v4\n", "a tag or branch")

    def test_full_version_tag(self):
        self.assertRefused("- uses: actions/checkout@v4.2.2 # v4.2.2\n", "a tag or branch")

    def test_branch(self):
        self.assertRefused("- uses: step-security/harden-runner@main\n", "a tag or branch")

    def test_short_sha(self):
        self.assertRefused("- uses: actions/checkout@de0fac2 # v6.0.2\n", "a short SHA")

    def test_39_hex_sha(self):
        self.assertRefused(f"- uses: actions/checkout@{SHA[:39]} # v6.0.2\n", "a short SHA")

    def test_upper_case_sha(self):
        self.assertRefused(f"- uses: actions/checkout@{SHA.upper()} # v6.0.2\n", "upper-case")

    def test_missing_comment(self):
        self.assertRefused(f"- uses: actions/checkout@{SHA}\n", "needs a `# vX.Y.Z` comment")

    def test_comment_without_version(self):
        self.assertRefused(f"- uses: actions/checkout@{SHA} # pinned\n", "needs a `# vX.Y.Z` comment")

    def test_moving_major_in_comment(self):
        self.assertRefused(f"- uses: actions/checkout@{SHA} # v6\n", "needs a `# vX.Y.Z` comment")

    def test_comment_glued_to_the_value(self):
        # YAML needs a space before '#', otherwise the '#...' is part of the ref.
        self.assertRefused(f"- uses: actions/checkout@{SHA}#v6.0.2\n", "a tag or branch")

    def test_docker_by_tag(self):
        self.assertRefused("- uses: docker://alpine:3.20\n", "@sha256 digest")

    def test_flow_style_is_not_silently_skipped(self):
        self.assertRefused(f"- {{ uses: actions/checkout@v4 }}\n", "cannot read")

    def test_reusable_workflow_by_tag(self):
        wf = "jobs:\n  call:\n    uses: org/repo/.github/workflows/x.yml@v1\n"
        errs = check_pins.check_text(wf, "wf.yml")[0]
        self.assertEqual(len(errs), 1, errs)
        self.assertIn("a tag or branch", errs[0])


class TreeRules(unittest.TestCase):
    def make_tree(self, workflows: dict[str, str], table: str | None) -> Path:
        d = Path(tempfile.mkdtemp(prefix="check-pins-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(d))
        (d / ".github/workflows").mkdir(parents=True)
        for name, body in workflows.items():
            (d / ".github/workflows" / name).write_text(body)
        if table is not None:
            (d / "docs").mkdir()
            (d / "docs/pipeline.md").write_text(table)
        return d

    def wf(self, sha: str, version: str) -> str:
        return (f"on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n"
                f"      - uses: actions/checkout@{sha} # {version}\n")

    def test_clean_tree_passes(self):
        root = self.make_tree({"a.yml": self.wf(SHA, "v6.0.2")}, f"| actions/checkout | {SHA} | v6.0.2 |")
        self.assertEqual(check_pins.run(root, root / "docs/pipeline.md"), [])

    def test_two_pins_for_one_action_is_drift(self):
        root = self.make_tree({"a.yml": self.wf(SHA, "v6.0.2"), "b.yml": self.wf(SHA2, "v5.0.0")},
                              f"actions/checkout {SHA} {SHA2}")
        errs = check_pins.run(root, root / "docs/pipeline.md")
        self.assertEqual(len(errs), 1, errs)
        self.assertIn("use one pin per action", errs[0])

    def test_pin_missing_from_provenance_table(self):
        root = self.make_tree({"a.yml": self.wf(SHA, "v6.0.2")}, "| actions/checkout | (none) |")
        errs = check_pins.run(root, root / "docs/pipeline.md")
        self.assertEqual(len(errs), 1, errs)
        self.assertIn("provenance table", errs[0])

    def test_missing_table_file(self):
        root = self.make_tree({"a.yml": self.wf(SHA, "v6.0.2")}, None)
        errs = check_pins.run(root, root / "docs/pipeline.md")
        self.assertTrue(any("missing" in e for e in errs), errs)

    def test_no_workflows_is_an_error_not_a_pass(self):
        d = Path(tempfile.mkdtemp(prefix="check-pins-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(d))
        self.assertEqual(len(check_pins.run(d, None)), 1)


class ApkPins(unittest.TestCase):
    def test_the_dockerfile_passes(self):
        text = (HERE.parents[1] / "Dockerfile").read_text(encoding="utf-8")
        self.assertIn("apk add", text)
        self.assertEqual(check_pins.apk_pins(text, "Dockerfile"), [])

    def test_fuzzy_major_minor_accepted(self):
        self.assertEqual(check_pins.apk_pins("RUN apk add --no-cache musl-dev=~1.2 clang=~20\n", "D"), [])

    def test_exact_revision_refused(self):
        errs = check_pins.apk_pins("RUN xx-apk add --no-cache \\\n    musl-dev=1.2.5-r12 && true\n", "D")
        self.assertEqual(len(errs), 1)
        self.assertIn("musl-dev=1.2.5-r12: an exact revision", errs[0])

    def test_fuzzy_with_revision_refused(self):
        self.assertIn("an exact revision", check_pins.apk_pins("RUN apk add musl-dev=~1.2.5-r12\n", "D")[0])

    def test_exact_version_and_unpinned_refused(self):
        errs = check_pins.apk_pins("RUN apk add lld=20.1.8 clang\n", "D")
        self.assertEqual(len(errs), 2)
        self.assertIn("not a fuzzy", errs[0])
        self.assertIn("unpinned", errs[1])


if __name__ == "__main__":
    unittest.main()
