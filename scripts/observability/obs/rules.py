"""names, docs, mutate, exposition: the rules, their tests, the docs and /metrics against metrics.txt."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml

from obs.common import (
    DASHBOARD, DOC, OBS, ROOT, RULES, RUNBOOK_BASE, SEVERITY_RECEIVER, TESTS, dashboard_exprs,
    github_anchors, load_external, load_metrics_txt, load_rule_groups, metric_names,
    own_selectable_names, run, tool,
)

# --- names -------------------------------------------------------------------------

def check_names(rules=RULES, tests=TESTS, dashboard=DASHBOARD, doc=DOC) -> list[str]:
    errors = []
    metrics = load_metrics_txt()
    external = load_external()
    rule_items = load_rule_groups(rules)
    recorded = {r["record"] for _, r in rule_items if "record" in r}
    known = own_selectable_names(metrics) | external | recorded
    anchors = github_anchors(Path(doc).read_text()) if Path(doc).exists() else set()
    dash = json.loads(Path(dashboard).read_text())
    dash_path = f"/d/{dash.get('uid')}/"

    for path, r in rule_items:
        what = f"{path.name}: {r.get('alert') or r.get('record')}"
        for n in sorted(metric_names(r["expr"]) - known):
            errors.append(f"{what}: unknown metric {n} (not in metrics.txt, external-metrics.txt or a recording rule)")
        if "alert" in r:
            sev = r.get("labels", {}).get("severity")
            if sev not in SEVERITY_RECEIVER:
                errors.append(f"{what}: severity must be one of {sorted(SEVERITY_RECEIVER)}, got {sev!r}")
            ann = r.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    errors.append(f"{what}: annotation {key} missing")
            url = ann.get("runbook_url", "")
            if not url.startswith(RUNBOOK_BASE):
                errors.append(f"{what}: runbook_url must point into docs/observability.md ({RUNBOOK_BASE}...)")
            elif url[len(RUNBOOK_BASE):] not in anchors:
                errors.append(f"{what}: runbook anchor #{url[len(RUNBOOK_BASE):]} is not a heading of {Path(doc).name}")
            if "dashboard" in ann and not ann["dashboard"].startswith(dash_path):
                errors.append(f"{what}: dashboard annotation does not point at {dash_path} (the dashboard's uid)")

    for t in tests:
        doc_t = yaml.safe_load(Path(t).read_text())
        for test in doc_t["tests"]:
            for s in test.get("input_series", []):
                series = s["series"]
                name = series.split("{", 1)[0].strip()
                if name not in own_selectable_names(metrics) | external:
                    errors.append(f"{Path(t).name}: input series uses unknown metric {name}")
                if name.startswith("wordcount_"):
                    labels = set(re.findall(r"(\w+)\s*=", series.split("{", 1)[1] if "{" in series else ""))
                    missing = {"job", "namespace", "pod", "instance", "word"} - labels
                    if missing:
                        errors.append(f"{Path(t).name}: {name} series lacks the scrape labels {sorted(missing)}")
                    base = re.sub(r"_(bucket|sum|count)$", "", name)
                    declared = set(metrics.get(name, metrics.get(base, ("", [])))[1])
                    extra = labels - {"job", "namespace", "pod", "instance", "word", "le"} - declared
                    if extra:
                        errors.append(f"{Path(t).name}: {name} series has labels {sorted(extra)} the service does not export")

    for expr, where in dashboard_exprs(dash):
        for n in sorted(metric_names(expr) - known):
            errors.append(f"dashboard {where}: unknown metric {n}")
    return errors


# --- docs ---------------------------------------------------------------------------

def check_docs(doc=DOC) -> list[str]:
    """docs/observability.md may only name what exists: linked files, metrics,
    recording rules, alerts, and the `otel` cargo feature if it mentions one."""
    errors = []
    text = Path(doc).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+://", target) and not (Path(doc).parent / target).exists():
            errors.append(f"{Path(doc).name}: link to missing file {target}")
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        if anchor not in github_anchors(text):
            errors.append(f"{Path(doc).name}: link to missing heading #{anchor}")
    metrics = load_metrics_txt()
    rule_items = load_rule_groups()
    known = (own_selectable_names(metrics) | set(metrics) | load_external()
             | {r["record"] for _, r in rule_items if "record" in r})
    for name in set(re.findall(r"`(wordcount_[a-z_]+)", text)) - known:
        errors.append(f"{Path(doc).name}: names metric {name}, which is not in metrics.txt")
    alerts = {r["alert"] for _, r in rule_items if "alert" in r}
    for name in set(re.findall(r"`(Wordcount[A-Z]\w+)`", text)) - alerts:
        errors.append(f"{Path(doc).name}: names alert {name}, which no rule defines")
    for name in alerts - set(re.findall(r"`(Wordcount[A-Z]\w+)`", text)):
        errors.append(f"{Path(doc).name}: alert {name} is not described")
    if re.search(r"features?\W+otel|`otel`", text):
        cargo = (ROOT / "Cargo.toml").read_text()
        if not re.search(r"(?ms)^\[features\].*?^otel\s*=", cargo):
            errors.append(f"{Path(doc).name}: mentions the `otel` cargo feature, which Cargo.toml does not define")
    return errors


# --- mutation test ---------------------------------------------------------------------------

# Thresholds become ">= 0": the alert fires for every series its selectors
# match, so a test where some word must stay quiet has to notice.
THRESHOLD = re.compile(r"(?:>|<|==)\s*(?:bool\s+)?(?:\(\s*[\d.e*+ ]+\)|[\d.e+]+)(?![\w.])")

# Mutants that may survive, and why that is not a gap in the tests.
EXPECTED_SURVIVORS = {
    ("WordcountBigQueryAccessBroken", "thresholds >= 0"):
        "its quiet case (a timeout) is excluded by the reason selector, not the threshold; "
        "the 'and' series with reason=timeout pins that",
}


def check_mutations() -> list[str]:
    """Every alert must be pinned by the tests: made to never fire, to fire
    for everything its selectors match, or to fire without waiting for its
    `for:` duration, `promtool test rules` must fail."""
    from concurrent.futures import ThreadPoolExecutor

    tests_for: dict[str, list[str]] = {}
    for t in TESTS:
        for rf in yaml.safe_load(t.read_text())["rule_files"]:
            tests_for.setdefault(Path(rf).name, []).append(t.name)
    baseline = run([tool("promtool"), "test", "rules", *map(str, TESTS)])
    if baseline.returncode != 0:
        return [f"promtool test rules fails before any mutation:\n{baseline.stdout}"]
    mutants = []  # (alert, mutation, rules file name, mutated text)
    for rules_file in RULES:
        doc = yaml.safe_load(rules_file.read_text())
        for gi, g in enumerate(doc["groups"]):
            for ri, r in enumerate(g["rules"]):
                if "alert" not in r:
                    continue
                variants = {"never fires": dict(r, expr="vector(1) == 2")}
                eager = THRESHOLD.sub(">= 0", r["expr"])
                if eager != r["expr"]:
                    variants["thresholds >= 0"] = dict(r, expr=eager)
                if "for" in r:
                    variants["without for"] = {k: v for k, v in r.items() if k != "for"}
                for mutation, rule in variants.items():
                    mutated = copy.deepcopy(doc)
                    mutated["groups"][gi]["rules"][ri] = rule
                    mutants.append((r["alert"], mutation, rules_file.name, yaml.safe_dump(mutated, sort_keys=False)))

    def survives(m) -> bool:
        _, _, name, text = m
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(OBS / "rules", Path(tmp) / "rules")
            shutil.copytree(OBS / "tests", Path(tmp) / "tests")
            (Path(tmp) / "rules" / name).write_text(text)
            tests = [str(Path(tmp) / "tests" / t) for t in tests_for.get(name, [])]
            return run([tool("promtool"), "test", "rules", *tests]).returncode == 0

    errors = []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for (alert, mutation, _, _), survived in zip(mutants, pool.map(survives, mutants)):
            expected = (alert, mutation) in EXPECTED_SURVIVORS
            if survived and not expected:
                errors.append(f"mutant survived: {alert} {mutation}, yet the tests pass")
            elif not survived and expected:
                errors.append(f"{alert} {mutation} is now killed: drop it from EXPECTED_SURVIVORS")
    print(f"mutate: {len(mutants)} mutants of {len({m[0] for m in mutants})} alerts")
    return errors


# --- exposition --------------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def check_exposition(text: str) -> list[str]:
    """Compare a live /metrics exposition with metrics.txt."""
    errors = []
    metrics = load_metrics_txt()
    types: dict[str, str] = {}
    samples: dict[str, list[dict]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, fam, t = line.split(None, 3)
            types[fam] = t.strip()
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if m:
                samples.setdefault(m.group(1), []).append(dict(LABEL.findall(m.group(3) or "")))
    documented_families = set()
    for name, (mtype, labels) in metrics.items():
        if mtype == "counter":
            fams = [name[:-len("_total")], name] if name.endswith("_total") else [name]
            ok_types = {"counter"}
        elif mtype == "info":
            fams = [name[:-len("_info")], name] if name.endswith("_info") else [name]
            ok_types = {"info", "gauge"}
        else:
            fams, ok_types = [name], {mtype}
        documented_families.update(fams)
        fam = next((f for f in fams if f in types), None)
        if fam is None:
            errors.append(f"{name}: not exposed (no # TYPE line for {' or '.join(fams)})")
            continue
        if types[fam] not in ok_types:
            errors.append(f"{name}: exposed as {types[fam]}, metrics.txt says {mtype}")
        sample_names = [f"{name}_bucket", f"{name}_count"] if mtype == "histogram" else [name]
        for sn in sample_names:
            for s in samples.get(sn, []):
                got = set(s) - {"le"}
                if got != set(labels):
                    errors.append(f"{sn}: labels {sorted(got)}, metrics.txt says {sorted(labels)}")
                    break
    for fam, t in types.items():
        if fam.startswith("wordcount_") and fam not in documented_families:
            errors.append(f"{fam}: exposed ({t}) but not documented in metrics.txt")
    # The latency SLO needs its threshold as a bucket boundary.
    les = set()
    for _, r in load_rule_groups():
        les.update(re.findall(r'wordcount_http_request_duration_seconds_bucket\{[^}]*le="([^"]+)"', r["expr"]))
    buckets = {s.get("le") for s in samples.get("wordcount_http_request_duration_seconds_bucket", [])}
    if buckets:
        for le in sorted(les):
            if le not in buckets:
                errors.append(f'wordcount_http_request_duration_seconds has no le="{le}" bucket, which the latency SLO rules use')
    elif les:
        errors.append("wordcount_http_request_duration_seconds has no samples: send a request before scraping")
    return errors
