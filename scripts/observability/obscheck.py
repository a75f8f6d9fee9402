#!/usr/bin/env python3
"""Checks for deploy/observability/ beyond what promtool and amtool check alone.

Subcommands (scripts/observability/check.sh runs them all):
  names       every metric the rules, the rules tests and the dashboard use is
              exported by wordcount (metrics.txt), recorded by our rules, or a
              documented external metric (external-metrics.txt); every alert
              has a page/ticket severity, a runbook_url whose anchor exists in
              docs/observability.md and a dashboard link to the real dashboard
  docs        docs/observability.md links only existing files and headings,
              and names only metrics, alerts and features that exist
  dashboard   the Grafana JSON: structure, variables, layout, and every query
              parses (rendered into a rules file for `promtool check rules`)
  scrape      the relabelling of prometheus/prometheus.yml, run by promtool on
              pod metadata fed through file_sd, yields the documented labels;
              the GMP PodMonitoring and the PodMonitor state the same contract
  routes      every alert in the rules reaches the receiver its severity names
  inhibit     a throwaway Alertmanager on 127.0.0.1 mutes what the inhibit
              rules claim to mute, and nothing else
  mutate      mutation test of the promtool tests: each alert made to never
              fire, or to always fire, must make `promtool test rules` fail
  selftest    the `names` and `dashboard` checks refuse broken inputs
  exposition  compare a /metrics text (file or -) with metrics.txt
  manifests   raw-yaml/ Deployments honour the scrape contract (skipped when
              raw-yaml/ does not exist yet)

Python 3 stdlib plus PyYAML (python3-yaml, installed by install.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = sorted((OBS / "rules").glob("*.rules.yml"))
TESTS = sorted((OBS / "tests").glob("*.test.yml"))
DASHBOARD = OBS / "grafana" / "wordcount.json"
PROMETHEUS_YML = OBS / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = OBS / "alertmanager" / "alertmanager.yml"
DOC = ROOT / "docs" / "observability.md"
RUNBOOK_BASE = "https://github.com/wordcount/wordcount/blob/main/docs/observability.md#"
SEVERITY_RECEIVER = {"page": "wordcount-pager", "ticket": "wordcount-ticket"}

BIN = Path(os.environ.get("OBS_BIN", ""))  # promtool/amtool dir, set by check.sh


class CheckError(Exception):
    pass


def tool(name: str) -> str:
    global BIN
    if not str(BIN) or str(BIN) == ".":
        # Run standalone: ask the install script (it is quick when installed).
        out = subprocess.run([str(ROOT / "scripts" / "install.sh"), "--print", "observability"],
                             capture_output=True, text=True, check=True).stdout.strip()
        BIN = Path(out)
    return str(BIN / name)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


# --- PromQL metric names ---------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "atan2", "inf", "nan",
}
# keywords followed by a parenthesised label list, not an expression
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<braces>\{[^}]*\})
  | (?P<brackets>\[[^\]]*\])
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<other>\S)
    """,
    re.VERBOSE,
)
NAME_MATCHER = re.compile(r"""__name__\s*=\s*["']([^"']+)["']""")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a tokenizer, not a parser:
    identifiers that are not functions, keywords or label lists)."""
    names: set[str] = set()
    expr = re.sub(r"\boffset\s+-?(?:\d+[a-z]+)+", " ", expr)  # durations outside [...]
    tokens = [(m.lastgroup, m.group()) for m in TOKEN.finditer(expr)]
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        if kind == "braces":
            names.update(NAME_MATCHER.findall(text))
        elif kind == "ident":
            nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
            low = text.lower()
            if low in LABEL_LIST_KEYWORDS and nxt[0] == "lparen":
                depth, i = 0, i + 1  # skip "( label, label )"
                while i < len(tokens):
                    if tokens[i][0] == "lparen":
                        depth += 1
                    elif tokens[i][0] == "rparen":
                        depth -= 1
                        if depth == 0:
                            break
                    i += 1
            elif low in PROMQL_KEYWORDS:
                pass
            elif nxt[0] == "lparen":
                pass  # function or aggregation
            elif low in {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
                         "quantile", "count_values", "group"} and nxt[0] == "ident" \
                    and nxt[1].lower() in ("by", "without"):
                pass  # `sum by (x) (...)`
            else:
                names.add(text)
        i += 1
    return names


def load_metrics_txt() -> dict[str, tuple[str, list[str]]]:
    out = {}
    for line in (OBS / "metrics.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, mtype, *labels = line.split()
        if mtype not in ("counter", "gauge", "histogram", "info"):
            raise CheckError(f"metrics.txt: {name}: unknown type {mtype}")
        out[name] = (mtype, labels)
    return out


def load_external() -> set[str]:
    return {
        line.split()[0]
        for line in (OBS / "external-metrics.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def own_selectable_names(metrics: dict) -> set[str]:
    names = set()
    for name, (mtype, _) in metrics.items():
        if mtype == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        else:
            names.add(name)
    return names


def load_rule_groups(paths=RULES) -> list[tuple[Path, dict]]:
    out = []
    for p in paths:
        doc = yaml.safe_load(Path(p).read_text())
        for g in doc["groups"]:
            for r in g["rules"]:
                out.append((Path(p), r))
    return out


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


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


def dashboard_exprs(dash: dict):
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if v.get("type") == "query":
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"^\s*label_values\((.*),\s*\w+\)\s*$", q or "")
            yield (m.group(1) if m else q), f"variable ${v['name']}"
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                yield t["expr"], f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}"


def all_panels(dash: dict):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


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


# --- dashboard ---------------------------------------------------------------------

PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "state-timeline",
               "status-history", "text", "heatmap", "logs", "alertlist"}
GRAFANA_BUILTIN_VARS = {"__rate_interval", "__interval", "__range", "__range_s", "__interval_ms",
                        "__dashboard", "__from", "__to"}


def check_dashboard(path=DASHBOARD, promtool_syntax=True) -> list[str]:
    errors = []
    try:
        dash = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        return [f"{Path(path).name}: not valid JSON: {e}"]
    sv = dash.get("schemaVersion")
    if not isinstance(sv, int) or sv < 36:
        errors.append(f"schemaVersion must be an integer >= 36 (Grafana 9+), got {sv!r}")
    for key in ("uid", "title", "panels", "templating"):
        if not dash.get(key):
            errors.append(f"top-level {key} missing")
    if dash.get("id") not in (None,):
        errors.append("top-level id must be null/absent (it is instance-specific; uid identifies the dashboard)")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    for need in ("datasource", "namespace", "word", "instance"):
        if need not in variables:
            errors.append(f"template variable ${need} missing")
    ids, boxes = set(), []
    for p in all_panels(dash):
        pid = p.get("id")
        where = f"panel {pid} {p.get('title')!r}"
        if not isinstance(pid, int) or pid in ids:
            errors.append(f"{where}: id missing or duplicate")
        ids.add(pid)
        if not p.get("title"):
            errors.append(f"{where}: no title")
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
            errors.append(f"{where}: gridPos missing or wider than 24 columns: {gp}")
        else:
            for other, ogp in boxes:
                if (gp["x"] < ogp["x"] + ogp["w"] and ogp["x"] < gp["x"] + gp["w"]
                        and gp["y"] < ogp["y"] + ogp["h"] and ogp["y"] < gp["y"] + gp["h"]):
                    errors.append(f"{where}: overlaps {other}")
            boxes.append((where, gp))
        if p.get("type") == "row":
            continue
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            errors.append(f"{where}: datasource must be the ${{datasource}} variable, not a fixed uid")
        if p.get("type") not in PANEL_TYPES:
            errors.append(f"{where}: unknown panel type {p.get('type')!r}")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"{where}: no queries")
        for t in targets:
            if not t.get("expr"):
                errors.append(f"{where}: target {t.get('refId')} has no expr")
                continue
            # A legend can only show labels the aggregations keep.
            for by in re.findall(r"\bby\s*\(([^)]*)\)", t["expr"]):
                kept = {l.strip() for l in by.split(",")}
                for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                    if label not in kept:
                        errors.append(f"{where} {t.get('refId')}: legend uses {{{{{label}}}}}, "
                                      f"which `by ({by})` drops")
    refs = set()
    for expr, where in dashboard_exprs(dash):
        for v in re.findall(r"\$\{?(\w+)", expr):
            refs.add(v)
            if v not in variables and v not in GRAFANA_BUILTIN_VARS:
                errors.append(f"{where}: uses undefined variable ${v}")
    if promtool_syntax and not errors:
        errors += promql_syntax(list(dashboard_exprs(dash)))
    return errors


def render_grafana(expr: str) -> str:
    """Substitute Grafana variables with values that make valid PromQL."""
    expr = re.sub(r"\$\{?__rate_interval\}?|\$\{?__interval\}?|\$\{?__range\}?", "5m", expr)
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", "x", expr)


def promql_syntax(exprs: list[tuple[str, str]]) -> list[str]:
    rules = {"groups": [{"name": "dashboard-syntax", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": render_grafana(e)} for i, (e, _) in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
    try:
        r = run([tool("promtool"), "check", "rules", f.name])
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        return [f"a dashboard query does not parse: {r.stdout}{r.stderr}".strip()]
    return []


# --- scrape ------------------------------------------------------------------------

def fake_pod(ip, port, port_name, ns, pod, instance, phase="Running", name="wordcount"):
    return {"targets": [f"{ip}:{port}"], "labels": {
        "__meta_kubernetes_namespace": ns,
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_container_name": "wordcount",
        "__meta_kubernetes_pod_container_port_name": port_name,
        "__meta_kubernetes_pod_container_port_number": str(port),
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": name,
        "__meta_kubernetes_pod_label_app_kubernetes_io_instance": instance,
    }}


def check_scrape() -> list[str]:
    errors = []
    cfg = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    job = jobs.get("wordcount")
    if not job:
        return ["prometheus.yml: no job_name wordcount (the rules select up{job=\"wordcount\"})"]
    # Debian's promtool is built without the kubernetes SD plugin, so the
    # discovery block is checked here and replaced by file_sd below; the
    # relabel_configs, which do all the work, run unchanged in promtool.
    sd = job.get("kubernetes_sd_configs") or []
    if len(sd) != 1 or sd[0].get("role") != "pod":
        errors.append("prometheus.yml: wordcount job must use one kubernetes_sd_configs entry with role: pod")
    elif {"role": "pod", "label": "app.kubernetes.io/name=wordcount"} not in sd[0].get("selectors", []):
        errors.append("prometheus.yml: the pod selector app.kubernetes.io/name=wordcount is missing")
    if errors:
        return errors
    with tempfile.TemporaryDirectory() as tmp:
        targets = [
            fake_pod("10.8.0.12", 8080, "http", "wordcount", "wordcount-the-7d9f8b6c5-2xq4p", "the"),
            fake_pod("10.8.0.12", 9090, "admin", "wordcount", "wordcount-the-7d9f8b6c5-2xq4p", "the"),
            fake_pod("10.8.0.44", 9090, "admin", "wordcount", "wordcount-coffee-7c6b5d4f8-z8v1n", "coffee"),
            fake_pod("10.8.0.45", 9090, "admin", "wordcount", "wordcount-coffee-7c6b5d4f8-old00", "coffee", phase="Succeeded"),
        ]
        (Path(tmp) / "pods.json").write_text(json.dumps(targets))
        test_cfg = copy.deepcopy(cfg)
        test_cfg.pop("rule_files", None)  # checked by `promtool check rules`
        for j in test_cfg["scrape_configs"]:
            if j.pop("kubernetes_sd_configs", None) is not None:
                j["file_sd_configs"] = [{"files": [str(Path(tmp) / "pods.json")]}]
        cfg_path = Path(tmp) / "prometheus.yml"
        cfg_path.write_text(yaml.safe_dump(test_cfg))
        r = run([tool("promtool"), "check", "config", str(cfg_path)])
        if r.returncode != 0:
            return [f"promtool check config: {r.stdout}{r.stderr}"]
        r = run([tool("promtool"), "check", "service-discovery", "--timeout=10s", str(cfg_path), "wordcount"])
        if r.returncode != 0:
            return [f"promtool check service-discovery: {r.stdout}{r.stderr}"]
        got = sorted(
            ({k: v for k, v in t["labels"].items() if not k.startswith("__")} for t in json.loads(r.stdout)
             if t["labels"]),
            key=lambda l: l["instance"],
        )
    want = [
        {"instance": "10.8.0.12:9090", "job": "wordcount", "namespace": "wordcount",
         "pod": "wordcount-the-7d9f8b6c5-2xq4p", "word": "the"},
        {"instance": "10.8.0.44:9090", "job": "wordcount", "namespace": "wordcount",
         "pod": "wordcount-coffee-7c6b5d4f8-z8v1n", "word": "coffee"},
    ]
    if got != want:
        errors.append(f"relabelling: got targets {json.dumps(got)}\n  want {json.dumps(want)}")

    # The operator flavours must state the same contract.
    gmp = yaml.safe_load((OBS / "kubernetes" / "podmonitoring.yaml").read_text())
    spec = gmp["spec"]
    if gmp.get("apiVersion") != "monitoring.googleapis.com/v1" or gmp.get("kind") != "PodMonitoring":
        errors.append("podmonitoring.yaml: expected monitoring.googleapis.com/v1 PodMonitoring")
    if gmp["metadata"].get("name") != "wordcount":
        errors.append("podmonitoring.yaml: name must be wordcount (Managed Prometheus uses it as the job label)")
    if spec["selector"].get("matchLabels") != {"app.kubernetes.io/name": "wordcount"}:
        errors.append("podmonitoring.yaml: selector must be app.kubernetes.io/name=wordcount")
    if [(e.get("port"), e.get("path", "/metrics")) for e in spec["endpoints"]] != [("admin", "/metrics")]:
        errors.append("podmonitoring.yaml: must scrape port admin at /metrics, only")
    if {"from": "app.kubernetes.io/instance", "to": "word"} not in spec.get("targetLabels", {}).get("fromPod", []):
        errors.append("podmonitoring.yaml: targetLabels.fromPod must map app.kubernetes.io/instance to word")
    if "pod" not in spec.get("targetLabels", {}).get("metadata", []):
        errors.append("podmonitoring.yaml: targetLabels.metadata must include pod")
    pm = yaml.safe_load((OBS / "kubernetes" / "podmonitor.yaml").read_text())
    pspec = pm["spec"]
    if pm.get("apiVersion") != "monitoring.coreos.com/v1" or pm.get("kind") != "PodMonitor":
        errors.append("podmonitor.yaml: expected monitoring.coreos.com/v1 PodMonitor")
    if pspec.get("jobLabel") != "app.kubernetes.io/name":
        errors.append("podmonitor.yaml: jobLabel must be app.kubernetes.io/name (job=\"wordcount\")")
    if pspec["selector"].get("matchLabels") != {"app.kubernetes.io/name": "wordcount"}:
        errors.append("podmonitor.yaml: selector must be app.kubernetes.io/name=wordcount")
    eps = pspec["podMetricsEndpoints"]
    if [(e.get("port"), e.get("path", "/metrics")) for e in eps] != [("admin", "/metrics")]:
        errors.append("podmonitor.yaml: must scrape port admin at /metrics, only")
    relabel = {"sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "targetLabel": "word"}
    if not any(all(r.get(k) == v for k, v in relabel.items()) for r in eps[0].get("relabelings", [])):
        errors.append("podmonitor.yaml: relabelings must copy app.kubernetes.io/instance to word")
    return errors


# --- manifests contract ------------------------------------------------------------------

def check_manifests() -> list[str]:
    raw = ROOT / "raw-yaml"
    if not raw.is_dir():
        print("manifests: raw-yaml/ does not exist yet, contract not checked")
        return []
    errors, seen, scrape_allowed = [], 0, set()
    for f in sorted(raw.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "NetworkPolicy":
                for rule in doc["spec"].get("ingress", []):
                    if any(p.get("port") in (9090, "admin") for p in rule.get("ports", [])):
                        for peer in rule.get("from", []):
                            ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                            scrape_allowed.add(ns.get("kubernetes.io/metadata.name"))
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            tmpl = doc["spec"]["template"]
            labels = tmpl["metadata"].get("labels", {})
            if labels.get("app.kubernetes.io/name") != "wordcount":
                continue
            seen += 1
            where = f"{f.relative_to(ROOT)}: Deployment {doc['metadata']['name']}"
            containers = {c["name"]: c for c in tmpl["spec"]["containers"]}
            c = containers.get("wordcount")
            if not c:
                errors.append(f"{where}: no container named wordcount (kube-state-metrics/cAdvisor alerts select container=\"wordcount\")")
                continue
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if labels.get("app.kubernetes.io/instance") != env.get("WORD"):
                errors.append(f"{where}: pod label app.kubernetes.io/instance={labels.get('app.kubernetes.io/instance')!r}"
                              f" must equal WORD={env.get('WORD')!r} (it becomes the `word` label)")
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            if "admin" not in ports:
                errors.append(f"{where}: container port named admin missing (the scrape configs select it)")
    if seen == 0:
        errors.append("raw-yaml/: no Deployment with pod label app.kubernetes.io/name=wordcount")
    # GMP's collectors run in gmp-system; prometheus.yml's Prometheus in monitoring.
    for ns in ("gmp-system", "monitoring"):
        if ns not in scrape_allowed:
            errors.append(f"raw-yaml/: no NetworkPolicy admits the admin port (9090) from namespace {ns}")
    print(f"manifests: {seen} wordcount Deployments honour the scrape contract" if not errors else "")
    return errors


# --- alertmanager ------------------------------------------------------------------------

def alerts_with_severity() -> list[tuple[str, str]]:
    return [(r["alert"], r.get("labels", {}).get("severity", "")) for _, r in load_rule_groups() if "alert" in r]


def check_routes() -> list[str]:
    errors = []
    r = run([tool("amtool"), "check-config", str(ALERTMANAGER_YML)])
    if r.returncode != 0:
        return [f"amtool check-config: {r.stdout}{r.stderr}"]
    cases = [(a, {"alertname": a, "severity": s, "namespace": "wordcount", "word": "the"}, SEVERITY_RECEIVER.get(s))
             for a, s in alerts_with_severity()]
    # an alert without severity still reaches people
    cases.append(("(no severity)", {"alertname": "Unlabelled", "namespace": "wordcount"}, "wordcount-ticket"))
    for name, labels, want in cases:
        r = run([tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}"]
                + [f"{k}={v}" for k, v in labels.items()])
        got = r.stdout.strip()
        if r.returncode != 0 or got != want:
            errors.append(f"routing {name}: got receiver {got!r}, want {want!r} {r.stderr.strip()}")
    return errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_inhibit() -> list[str]:
    """Post alerts to a real Alertmanager and read back which are inhibited."""
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load(ALERTMANAGER_YML.read_text())
        # Same routes and inhibit rules; receivers without integrations so the
        # test never tries to reach PagerDuty, Slack or SMTP.
        cfg["receivers"] = [{"name": r["name"]} for r in cfg["receivers"]]
        cfg["global"] = {"resolve_timeout": "5m"}
        (Path(tmp) / "am.yml").write_text(yaml.safe_dump(cfg))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [tool("prometheus-alertmanager"), f"--config.file={tmp}/am.yml", f"--storage.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "am.log", "w"), start_new_session=True)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
                    break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None:
                        return [f"alertmanager exited: {(Path(tmp) / 'am.log').read_text()}"]
                    time.sleep(0.1)
            else:
                return ["alertmanager did not become ready in 10 s"]
            base = {"namespace": "wordcount"}
            alerts = {
                # SLO: page mutes the ticket tier of the same SLO and word only
                "fast-the": {"alertname": "WordcountAvailabilityFastBurn", "severity": "page", "slo": "availability", "word": "the"},
                "drain-the": {"alertname": "WordcountAvailabilityBudgetDrain", "severity": "ticket", "slo": "availability", "word": "the"},
                "latdrain-the": {"alertname": "WordcountLatencyBudgetDrain", "severity": "ticket", "slo": "latency", "word": "the"},
                "drain-tea": {"alertname": "WordcountAvailabilityBudgetDrain", "severity": "ticket", "slo": "availability", "word": "tea"},
                # no ready pod mutes the per-pod tickets of that word only
                "unavail-and": {"alertname": "WordcountInstanceUnavailable", "severity": "page", "word": "and"},
                "notready-and": {"alertname": "WordcountPodNotReady", "severity": "ticket", "word": "and", "pod": "wordcount-and-1"},
                "notready-tea": {"alertname": "WordcountPodNotReady", "severity": "ticket", "word": "tea", "pod": "wordcount-tea-1"},
                "stale-and": {"alertname": "WordcountDataStale", "severity": "ticket", "word": "and"},
            }
            want_inhibited = {"drain-the", "notready-and"}
            body = json.dumps([{"labels": {**base, **l}} for l in alerts.values()]).encode()
            req = urllib.request.Request(f"{url}/api/v2/alerts", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=5).read()
            got = json.loads(urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5).read())
            by_labels = {json.dumps(a["labels"], sort_keys=True): a for a in got}
            for key, labels in alerts.items():
                a = by_labels.get(json.dumps({**base, **labels}, sort_keys=True))
                if a is None:
                    errors.append(f"inhibit: alert {key} not found in Alertmanager")
                    continue
                inhibited = bool(a["status"]["inhibitedBy"])
                if inhibited != (key in want_inhibited):
                    errors.append(f"inhibit: {key} inhibited={inhibited}, want {key in want_inhibited}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
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


# --- self test --------------------------------------------------------------------------------

def selftest() -> list[str]:
    """The checks must refuse what they are meant to refuse."""
    errors = []
    cases = {
        "expr": ('sum by (word) (rate(wordcount_http_requests_total{status=~"5.."}[5m])) / on (word) group_left(x) '
                 'sum without (pod) (rate(wordcount_http_request_count[5m]) offset 1h) and up > bool 1e3'),
    }
    want = {"wordcount_http_requests_total", "wordcount_http_request_count", "up"}
    got = metric_names(cases["expr"])
    if got != want:
        errors.append(f"metric_names: got {sorted(got)}, want {sorted(want)}")
    with tempfile.TemporaryDirectory() as tmp:
        dash = json.loads(DASHBOARD.read_text())
        panel = next(p for p in dash["panels"] if p.get("type") != "row")

        def variant(mutate) -> Path:
            d = copy.deepcopy(dash)
            mutate(d)
            p = Path(tmp) / f"d{len(list(Path(tmp).iterdir()))}.json"
            p.write_text(json.dumps(d))
            return p

        pid = panel["id"]

        def target_of(d):
            return next(p for p in d["panels"] if p["id"] == pid)["targets"][0]

        bad_metric = variant(lambda d: target_of(d).update(expr="rate(wordcount_no_such_metric_total[5m])"))
        if not any("wordcount_no_such_metric_total" in e for e in check_names(dashboard=bad_metric)):
            errors.append("names check accepted a dashboard query with an unknown metric")
        bad_syntax = variant(lambda d: target_of(d).update(expr="sum(rate(wordcount_ready[5m])"))
        if not check_dashboard(bad_syntax):
            errors.append("dashboard check accepted a query that does not parse")
        bad_var = variant(lambda d: target_of(d).update(expr='wordcount_ready{pod=~"$nope"}'))
        if not any("$nope" in e for e in check_dashboard(bad_var, promtool_syntax=False)):
            errors.append("dashboard check accepted an undefined variable")
        bad_legend = variant(lambda d: target_of(d).update(
            expr="sum by (word) (rate(wordcount_http_requests_total[5m]))", legendFormat="{{instance}}"))
        if not any("legend" in e for e in check_dashboard(bad_legend, promtool_syntax=False)):
            errors.append("dashboard check accepted a legend label the query aggregates away")
        overlap = variant(lambda d: d["panels"].append({**copy.deepcopy(panel), "id": 9999}))
        if not any("overlaps" in e for e in check_dashboard(overlap, promtool_syntax=False)):
            errors.append("dashboard check accepted overlapping panels")
        not_json = Path(tmp) / "broken.json"
        not_json.write_text(DASHBOARD.read_text()[:-2])
        if not check_dashboard(not_json):
            errors.append("dashboard check accepted invalid JSON")

        rules_doc = yaml.safe_load(RULES[0].read_text())
        alert = next(r for g in rules_doc["groups"] for r in g["rules"] if "alert" in r)
        alert["annotations"]["runbook_url"] = RUNBOOK_BASE + "no-such-heading"
        alert["labels"]["severity"] = "critical"
        alert["expr"] = "wordcount_bogus_seconds > 1"
        bad_rules = Path(tmp) / RULES[0].name
        bad_rules.write_text(yaml.safe_dump(rules_doc))
        errs = check_names(rules=[bad_rules, *RULES[1:]])
        for needle in ("no-such-heading", "severity", "wordcount_bogus_seconds"):
            if not any(needle in e for e in errs):
                errors.append(f"names check accepted a rule with a bad {needle}")

        exposition = ("# TYPE wordcount_ready gauge\nwordcount_ready 1\n"
                      "# TYPE wordcount_surprise counter\nwordcount_surprise_total 1\n")
        errs = check_exposition(exposition)
        if not any("wordcount_surprise" in e for e in errs) or not any("not exposed" in e for e in errs):
            errors.append("exposition check accepted an undocumented or a missing metric")
    return errors


# --- main --------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["names", "docs", "dashboard", "scrape", "routes", "inhibit", "mutate",
                                      "selftest", "exposition", "manifests"])
    ap.add_argument("files", nargs="*", help="exposition: /metrics texts of one or more instances (- for stdin); "
                    "a family counts as exposed if any of them has it")
    args = ap.parse_args()
    fn = {
        "names": check_names, "docs": check_docs, "dashboard": check_dashboard, "scrape": check_scrape,
        "routes": check_routes, "inhibit": check_inhibit, "mutate": check_mutations,
        "selftest": selftest, "manifests": check_manifests,
        "exposition": lambda: check_exposition("\n".join(
            sys.stdin.read() if f == "-" else Path(f).read_text() for f in (args.files or ["-"]))),
    }[args.check]
    try:
        errors = fn()
    except CheckError as e:
        errors = [str(e)]
    for e in errors:
        print(f"FAIL {args.check}: {e}", file=sys.stderr)
    if not errors:
        print(f"ok   {args.check}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
