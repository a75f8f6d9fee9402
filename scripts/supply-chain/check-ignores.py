#!/usr/bin/env python3
"""Policy checks on deny.toml that cargo-deny itself cannot express.

* Every advisory ignore must be a table with an `id` (or `crate`) and a
  `reason` that ends in "revisit YYYY-MM-DD"; once that date has passed the
  gate fails, so an ignore is re-decided instead of forgotten.
* Every accepted duplicate (`bans.skip`) needs a reason.

With --print-ids, prints the ignored advisory ids one per line (cargo-audit
gets them as --ignore flags, so deny.toml is the one place for ignores).
"""
import datetime
import os
import re
import sys
import tomllib

REVISIT = re.compile(r"revisit (\d{4}-\d{2}-\d{2})\s*$")


def main() -> int:
    args = sys.argv[1:]
    print_ids = "--print-ids" in args
    paths = [a for a in args if not a.startswith("--")]
    path = paths[0] if paths else "deny.toml"
    with open(path, "rb") as f:
        cfg = tomllib.load(f)

    today = datetime.date.fromisoformat(
        # Overridable so the self-test can prove an expired ignore fails.
        os.environ.get("WORDCOUNT_TODAY", datetime.date.today().isoformat())
    )
    problems = []
    ids = []
    for entry in cfg.get("advisories", {}).get("ignore", []):
        if not isinstance(entry, dict):
            problems.append(f"advisories.ignore entry {entry!r} has no reason: "
                            'write { id = "...", reason = "...; revisit YYYY-MM-DD" }')
            continue
        what = entry.get("id") or entry.get("crate") or "?"
        reason = entry.get("reason", "")
        m = REVISIT.search(reason)
        if not m:
            problems.append(f"advisories.ignore {what}: reason must end with "
                            f'"revisit YYYY-MM-DD" (got {reason!r})')
        else:
            try:
                due = datetime.date.fromisoformat(m.group(1))
            except ValueError:
                problems.append(f"advisories.ignore {what}: {m.group(1)} is not a date")
            else:
                if due < today:
                    problems.append(f"advisories.ignore {what}: revisit date {due} has passed; "
                                    "upgrade, or re-decide and set a new date")
        if "id" in entry:
            ids.append(entry["id"])

    for entry in cfg.get("bans", {}).get("skip", []):
        if not isinstance(entry, dict) or not entry.get("reason"):
            problems.append(f"bans.skip entry {entry!r} needs a reason for accepting the duplicate")

    if problems:
        for p in problems:
            print(f"deny.toml policy: {p}", file=sys.stderr)
        return 1
    if print_ids:
        for i in ids:
            print(i)
    return 0


if __name__ == "__main__":
    sys.exit(main())
