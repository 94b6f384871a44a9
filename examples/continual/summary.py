"""Prints, per cycle, the wall time and what came from the cache.
   engine show RUN --json | python3 summary.py LABEL"""
import collections
import json
import sys

r = json.load(sys.stdin)
label = sys.argv[1] if len(sys.argv) > 1 else r["id"]
status = collections.Counter(t["status"] for t in r["tasks"])
line = [f"{label}: run {r['id']} {r['status']} in {r['seconds']:.0f} s"]
for stage in ("tag", "cut", "extract", "golden_features", "detect_candidate", "detect_production"):
    items = [t.get("items") or {} for t in r["tasks"] if t.get("stage") == stage]
    if items:
        ran = sum(i.get("run", 0) for i in items)
        total = sum(i.get("total", 0) for i in items)
        line.append(f"{stage} ran {ran} of {total} videos")
line.append("tasks " + ", ".join(f"{n} {s}" for s, n in sorted(status.items())))
print("; ".join(line))
