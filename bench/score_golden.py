"""Scores `engine detect --json` outputs (`*.pred.json`) against the
generator's ground truth (`*.json` beside each video), per league, written
apart from the engine's own metrics so the figures are checked twice:
segment F1 at tIoU 0.5 and start/end F1 within 1 s, one-to-one greedy
matching, counts summed per league.
    python3 bench/score_golden.py DIR [--errors]
With --errors, every false alarm and missed replay is listed with the
generator's distractors that overlap it (what fooled the model)."""
import collections
import glob
import json
import sys


def f1(tp, n_pred, n_truth):
    p = tp / n_pred if n_pred else (1.0 if n_truth == 0 else 0.0)
    r = tp / n_truth if n_truth else 1.0
    return 0 if p + r == 0 else 2 * p * r / (p + r)


def match(pairs):
    pairs.sort()
    used_a, used_b, tp = set(), set(), 0
    for _, a, b in pairs:
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            tp += 1
    return tp


def iou(a, b):
    i = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return i / ((a[1] - a[0]) + (b[1] - b[0]) - i)


def overlapping(span, truth):
    a, b = span
    near = [f'{d["kind"]} {d["span"]["start"]:.1f}-{d["span"]["end"]:.1f}'
            for d in truth.get("distractors", [])
            if d["span"]["start"] < b + 0.5 and d["span"]["end"] > a - 0.5]
    return ", ".join(near) or "nothing the generator placed"


errors = []
tot = collections.defaultdict(lambda: [0, 0, 0, 0, 0, 0])
for pred_path in sorted(glob.glob(f"{sys.argv[1]}/*.pred.json")):
    pred = json.load(open(pred_path))["segments"]
    truth = json.load(open(pred_path.replace(".pred.json", ".json")))
    league = truth["video"]["league"]
    t = [(r["span"]["start"], r["span"]["end"]) for r in truth["replays"]]
    p = [(s["start"], s["end"]) for s in pred]
    seg = match([(-iou(a, b), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if iou(a, b) >= 0.5])
    st = match([(abs(a[0] - b[0]), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if abs(a[0] - b[0]) <= 1])
    en = match([(abs(a[1] - b[1]), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if abs(a[1] - b[1]) <= 1])
    hit_p = {i for i, a in enumerate(p) if any(iou(a, b) >= 0.5 for b in t)}
    hit_t = {j for j, b in enumerate(t) if any(iou(a, b) >= 0.5 for a in p)}
    name = pred_path.rsplit("/", 1)[-1].replace(".pred.json", "")
    for i, a in enumerate(p):
        if i not in hit_p:
            errors.append(f"  false alarm {name} {a[0]:.1f}-{a[1]:.1f} s: {overlapping(a, truth)}")
    for j, b in enumerate(t):
        if j not in hit_t:
            errors.append(f"  missed      {name} {b[0]:.1f}-{b[1]:.1f} s: {overlapping(b, truth)}")
    for k in (league, "all"):
        x = tot[k]
        x[0] += seg; x[1] += st; x[2] += en; x[3] += len(p); x[4] += len(t); x[5] += 1
print(f"golden set {sys.argv[1]} (seeds never trained on), through `engine detect`:")
for k, (seg, st, en, n_pred, n_truth, nv) in sorted(tot.items()):
    print(f"  {k:>14}: {nv} videos, {n_truth} replays, {n_pred} predicted: segment F1@0.5 {f1(seg, n_pred, n_truth):.3f}, start F1@1s {f1(st, n_pred, n_truth):.3f}, end F1@1s {f1(en, n_pred, n_truth):.3f}")
if "--errors" in sys.argv[2:]:
    print(f"errors ({len(errors)}):")
    print("\n".join(errors))
