"""Paths, the tools, and the PromQL, metrics.txt and Markdown readers every check shares."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
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
