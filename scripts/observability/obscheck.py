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

Python 3 stdlib plus PyYAML (the project's Python environment); the checks
live in obs/, one module per concern.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import yaml

from obs.common import CheckError, DASHBOARD, RULES, RUNBOOK_BASE, metric_names
from obs.rules import check_docs, check_exposition, check_mutations, check_names
from obs.dashboard import check_dashboard
from obs.scrape import check_manifests, check_scrape
from obs.alertmanager import check_inhibit, check_routes


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
