#!/usr/bin/env python3
"""Unit tests for check-policy.py: a compliant workflow passes, and each
house rule refuses the workflow that breaks it. Needs PyYAML (the workflow
tools venv; scripts/workflows/check.sh runs these with it)."""
from __future__ import annotations

import copy
import importlib.util
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_policy", HERE / "check-policy.py")
cp = importlib.util.module_from_spec(spec)
assert spec.loader is not None
spec.loader.exec_module(cp)

GOOD = """
name: x
on:
  push:
permissions: {}
concurrency:
  group: x
jobs:
  build:
    runs-on: ubuntu-24.04
    timeout-minutes: 10
    permissions:
      contents: read
    steps:
      - uses: step-security/harden-runner@0000000000000000000000000000000000000000 # v2.19.4
        with:
          egress-policy: audit
      - uses: actions/checkout@0000000000000000000000000000000000000000 # v6.0.2
        with:
          persist-credentials: false
      - run: make test
  sign:
    runs-on: ubuntu-24.04
    timeout-minutes: 10
    permissions:
      id-token: write
    steps:
      - uses: step-security/harden-runner@0000000000000000000000000000000000000000 # v2.19.4
        with:
          egress-policy: block
          allowed-endpoints: github.com:443
      - env:
          REF: ${{ needs.build.outputs.ref }}
        run: scripts/workflows/release.sh sign "$REF" dist
"""


def load(text: str):
    return yaml.load(text, Loader=cp.Loader)


class Policy(unittest.TestCase):
    # The release journey (P12, P13 over the jobs) is tested on the real
    # release.yml below; GOOD is not a release, so those findings are left
    # out here.
    def rules(self, doc, name="ci.yml") -> list[str]:
        return [r for w, r in (e.split(": ")[1:3] for e in cp.check_workflow(doc, name)) if w != "jobs"]

    def mutate(self, fn, name="ci.yml") -> list[str]:
        doc = copy.deepcopy(load(GOOD))
        fn(doc)
        return self.rules(doc, name)

    def test_good_workflow_passes(self):
        self.assertEqual(cp.check_workflow(load(GOOD), "ci.yml"), [])
        self.assertEqual(self.rules(load(GOOD), "release.yml"), [])

    def test_on_key_stays_a_string_and_booleans_stay_booleans(self):
        doc = load(GOOD)
        self.assertIn("on", doc)
        self.assertIs(doc["jobs"]["build"]["steps"][1]["with"]["persist-credentials"], False)

    def test_p1_top_level_permissions(self):
        self.assertEqual(self.mutate(lambda d: d.__setitem__("permissions", "read-all")), ["P1"])
        self.assertEqual(self.mutate(lambda d: d.pop("permissions")), ["P1"])

    def test_p1_job_without_permissions(self):
        self.assertEqual(self.mutate(lambda d: d["jobs"]["build"].pop("permissions")), ["P1"])

    def test_p2_timeout(self):
        self.assertEqual(self.mutate(lambda d: d["jobs"]["build"].pop("timeout-minutes")), ["P2"])
        self.assertEqual(self.mutate(lambda d: d["jobs"]["build"].__setitem__("timeout-minutes", 360)), ["P2"])

    def test_p3_harden_runner_first(self):
        self.assertEqual(self.mutate(lambda d: d["jobs"]["build"]["steps"].pop(0)), ["P3"])

    def test_p3_writer_must_block(self):
        def f(d):
            d["jobs"]["sign"]["steps"][0]["with"] = {"egress-policy": "audit"}
        self.assertEqual(self.mutate(f), ["P3"])

    def test_p3_block_needs_endpoints(self):
        self.assertEqual(self.mutate(lambda d: d["jobs"]["sign"]["steps"][0]["with"].pop("allowed-endpoints")), ["P3"])

    def test_p4_checkout_persisting_credentials(self):
        self.assertEqual(self.mutate(lambda d: d["jobs"]["build"]["steps"][1].pop("with")), ["P4"])

    def test_p5_pull_request_target(self):
        self.assertEqual(self.mutate(lambda d: d["on"].__setitem__("pull_request_target", None)), ["P5"])

    def test_p6_concurrency(self):
        self.assertEqual(self.mutate(lambda d: d.pop("concurrency")), ["P6", "P6"])

    def test_p7_expression_in_run(self):
        def f(d):
            d["jobs"]["build"]["steps"][2]["run"] = "make test ARG=${{ github.event.pull_request.title }}"
        self.assertEqual(self.mutate(f), ["P7"])

    def test_p8_inline_shell(self):
        def f(d):
            d["jobs"]["build"]["steps"][2]["run"] = "curl -sSf https://example.invalid/x.sh | sh"
        self.assertEqual(self.mutate(f), ["P8"])
        def g(d):
            d["jobs"]["build"]["steps"][2]["run"] = "make test\nrm -rf /"
        self.assertEqual(self.mutate(g), ["P8"])

    def test_p9_cache_in_release(self):
        def f(d):
            d["jobs"]["build"]["steps"].insert(2, {"uses": "Swatinem/rust-cache@" + "0" * 40})
        self.assertEqual(self.mutate(f, "release.yml"), ["P9"])
        self.assertEqual(self.mutate(f, "ci.yml"), [])
        def g(d):
            d["jobs"]["build"]["steps"].insert(2, {"uses": "docker/build-push-action@" + "0" * 40,
                                                   "with": {"cache-from": "type=gha"}})
        self.assertEqual(self.mutate(g, "release.yml"), ["P9"])

    def test_p13_provenance_only_in_a_reusable_workflow(self):
        def f(d):
            d["jobs"]["sign"]["steps"].append({"uses": "actions/attest-build-provenance@" + "0" * 40,
                                               "with": {"subject-path": "dist/x"}})
        self.assertEqual(self.mutate(f), ["P13"])
        def g(d):
            f(d)
            d["on"] = {"workflow_call": None}
        self.assertEqual(self.mutate(g), [])
        def h(d):
            f(d)
            d["on"] = {"workflow_call": None, "workflow_dispatch": None}
        self.assertEqual(self.mutate(h), ["P13"])


class ReleaseJourney(unittest.TestCase):
    """P11, P12 and P13, on the real release.yml, the build.yml it calls and
    deploy.yml, each mutated once."""

    ROOT = HERE.parents[1]
    BUILD = "./.github/workflows/build.yml"

    def real(self, name: str) -> dict:
        return load((self.ROOT / ".github/workflows" / name).read_text())

    def rules(self, doc, name="release.yml", build=None) -> list[str]:
        called = None if build is None else {self.BUILD: build}
        return [e.split(": ")[2] for e in cp.check_workflow(doc, name, called=called)]

    def build_rules(self, build) -> list[str]:
        """release.yml's findings with this build.yml, and build.yml's own."""
        return self.rules(self.real("release.yml"), build=build) + self.rules(build, "build.yml")

    def step(self, doc, job: str, needle: str) -> dict:
        return next(st for st in doc["jobs"][job]["steps"]
                    if needle in str(st.get("run", "")) or needle in str(st.get("uses", "")))

    def test_real_workflows_pass(self):
        self.assertEqual(cp.check_workflow(self.real("release.yml"), "release.yml"), [])
        self.assertEqual(cp.check_workflow(self.real("build.yml"), "build.yml"), [])
        self.assertEqual(cp.check_workflow(self.real("deploy.yml"), "deploy.yml"), [])

    def test_release_calls_build_yml(self):
        self.assertEqual(self.real("release.yml")["jobs"]["image"]["uses"], self.BUILD)

    def test_p11_cosign_release_pinned(self):
        for name in ("release.yml", "deploy.yml"):
            doc = self.real(name)
            job = next(j for j, job in doc["jobs"].items()
                       if any("cosign-installer" in str(st.get("uses", "")) for st in job.get("steps", [])))
            st = self.step(doc, job, "sigstore/cosign-installer")
            st["with"].pop("cosign-release")
            self.assertEqual(self.rules(doc, name), ["P11"])
            st["with"]["cosign-release"] = "v3.0.5"
            self.assertEqual(self.rules(doc, name), ["P11"])
            st["with"]["cosign-release"] = cp.COSIGN
            self.assertEqual(self.rules(doc, name), [])

    def test_p12_both_platforms_built(self):
        build = self.real("build.yml")
        self.step(build, "build", "docker/build-push-action")["with"]["platforms"] = "linux/amd64"
        self.assertEqual(self.build_rules(build), ["P12"])

    def test_p12_both_platforms_checked(self):
        doc = self.real("release.yml")
        doc["jobs"]["image-test"]["strategy"]["matrix"]["platform"] = ["linux/amd64"]
        self.assertEqual(self.rules(doc), ["P12"])

    def test_p12_publish_waits_for_verification(self):
        doc = self.real("release.yml")
        doc["jobs"]["publish"]["needs"] = ["image", "sign"]
        self.assertEqual(self.rules(doc), ["P12"])

    def test_p12_verification_uses_the_exact_tag(self):
        doc = self.real("release.yml")
        self.step(doc, "verify-signed", "release.sh verify-signed")["env"]["TAG"] = "v*"
        self.assertEqual(self.rules(doc), ["P12"])

    def test_p12_verification_job_cannot_write(self):
        doc = self.real("release.yml")
        doc["jobs"]["verify-signed"]["permissions"]["packages"] = "write"
        self.assertIn("P12", self.rules(doc))

    def test_p12_signing_job_mints_the_identity(self):
        doc = self.real("release.yml")
        del doc["jobs"]["sign"]["permissions"]["id-token"]
        self.assertEqual(self.rules(doc), ["P12"])

    def test_p12_assets_signed_and_follow_up_exist(self):
        build = self.real("build.yml")
        build["jobs"]["build"]["steps"] = [st for st in build["jobs"]["build"]["steps"]
                                           if "release.sh assets" not in str(st.get("run", ""))]
        self.assertEqual(self.build_rules(build), ["P12"])
        doc = self.real("release.yml")
        del doc["jobs"]["follow-up"]
        self.assertEqual(self.rules(doc), ["P12"])


    def test_p12_signing_waits_for_the_called_build(self):
        doc = self.real("release.yml")
        doc["jobs"]["sign"]["needs"] = ["gates"]
        doc["jobs"]["image-test"]["needs"] = "gates"
        self.assertIn("P12", self.rules(doc))

    def test_p13_provenance_back_in_release_yml_is_level_2(self):
        doc, build = self.real("release.yml"), self.real("build.yml")
        moved = [st for st in build["jobs"]["provenance"]["steps"] if "attest-build-provenance" in st.get("uses", "")]
        build["jobs"]["provenance"]["steps"] = [st for st in build["jobs"]["provenance"]["steps"] if st not in moved]
        doc["jobs"]["sign"]["steps"] += moved
        self.assertEqual(self.rules(doc, build=build), ["P13", "P13", "P13", "P13"])

    def test_p13_no_provenance_at_all(self):
        build = self.real("build.yml")
        del build["jobs"]["provenance"]
        self.assertEqual(self.build_rules(build), ["P13", "P13"])

    def test_p13_build_yml_only_called(self):
        build = self.real("build.yml")
        build["on"]["workflow_dispatch"] = None
        self.assertEqual(self.build_rules(build), ["P13", "P13"])

    def test_p13_build_job_mints_no_oidc_token(self):
        build = self.real("build.yml")
        build["jobs"]["build"]["permissions"]["id-token"] = "write"
        self.assertEqual(self.build_rules(build), ["P13"])

    def test_p13_image_built_outside_the_called_workflow(self):
        doc, build = self.real("release.yml"), self.real("build.yml")
        push = self.step(build, "build", "docker/build-push-action")
        doc["jobs"]["gates"]["steps"].append(push)
        self.assertIn("P13", self.rules(doc, build=build))


class EntryPoints(unittest.TestCase):
    """P10: the Makefile targets and scripts a workflow calls must exist."""

    def setUp(self):
        import shutil
        import tempfile
        self.root = Path(tempfile.mkdtemp(prefix="check-policy-"))
        self.addCleanup(shutil.rmtree, self.root)
        (self.root / "Makefile").write_text(
            ".PHONY: test lint\ntest lint: ## both\n\tcargo test\nX := 1\nimage-test:\n\ttrue\n")
        (self.root / "scripts/workflows").mkdir(parents=True)
        script = self.root / "scripts/workflows/release.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)

    def rules(self, doc) -> list[str]:
        return [e.split(": ")[2] for e in cp.check_workflow(doc, "ci.yml", self.root)]

    def test_existing_targets_and_executable_script_pass(self):
        doc = load(GOOD)
        doc["jobs"]["build"]["steps"][2]["run"] = "make lint test image-test"
        self.assertEqual(self.rules(doc), [])

    def test_undefined_make_target(self):
        doc = load(GOOD)
        doc["jobs"]["build"]["steps"][2]["run"] = "make test supply-chain"
        self.assertEqual(self.rules(doc), ["P10"])

    def test_variable_assignment_is_not_a_target(self):
        self.assertNotIn("X", cp.makefile_targets(self.root))

    def test_missing_script(self):
        doc = load(GOOD)
        doc["jobs"]["sign"]["steps"][1]["run"] = "scripts/workflows/nope.sh sign"
        self.assertEqual(self.rules(doc), ["P10"])

    def test_script_without_exec_bit(self):
        (self.root / "scripts/workflows/release.sh").chmod(0o644)
        self.assertEqual(self.rules(load(GOOD)), ["P10"])


if __name__ == "__main__":
    unittest.main()
