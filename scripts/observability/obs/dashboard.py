"""dashboard: the Grafana JSON's structure, variables, layout and queries."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import yaml

from obs.common import DASHBOARD, all_panels, dashboard_exprs, run, tool

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
