#!/usr/bin/env python3
"""Side-by-side benchmark: this project's `engine` against DVC and Snakemake.

Standard library only. The same pipeline for every tool, N stages in all:

    N/2 extract_i   reads data/in_i.txt          writes ext_i   (cat)
    N/2 train_i     reads ext_i                  writes train_i (cat)
    1   report      reads every train_i          writes report  (cat of all)

Every stage command also appends its own name to `ran.log` in the benchmark
directory, so the driver can check, for every run, which stages really ran
(a tool's own summary is not trusted alone).

Phases per tool, N and repetition, each in a fresh directory:

    cold     first run, empty store/cache          expect N+1 stages run
    noop     the same again, nothing changed       expect 0
    plan     data/in_0.txt changed; dry run        expect 3 to run (DVC: see below)
    change   the real run after that change        expect extract_0, train_0, report

Each phase is one process, timed by wall clock with its peak RSS (the
largest single process of its tree: os.wait4's ru_maxrss). Medians over the
repetitions. The 1-minute load average is recorded before and after each
phase; the driver first waits (up to --quiet-wait minutes) for it to drop
below --quiet-load.

Results are merged into OUT/results.json (so sizes and tools can be run by
separate invocations); OUT/table.md and bench/peers/time_vs_n.svg are
regenerated from all results, and --update-md replaces the table between the
markers of BENCHMARKS.md.

`engine` does not watch plain files yet. How it sees the changed input is
chosen by --engine-change:
  set    (default) the pipeline is a template; extract_0 gets
         `env: { IN0: "{{ in0 }}" }` and every run passes
         `--set in0=<content of data/in_0.txt>`, so a new content is a
         changed param of extract_0 (the driver reads that one file).
  force  the change phase passes `--force extract_0` (plan too).
  deps   every extract_i declares `deps: [data/in_i.txt]` (the engine hashes
         them itself; needs an engine with `deps:`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = Path(os.path.expanduser("~/.cache/engine-tools/peers-venv"))
TOOLS = ("engine", "snakemake", "dvc")
PHASES = ("cold", "noop", "plan", "change")


# ---------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_quiet(threshold: float, minutes: float) -> float:
    """Waits until the 1-minute load is below `threshold`, at most `minutes`."""
    deadline = time.time() + minutes * 60
    la = loadavg()
    if la >= threshold and minutes > 0:
        log(f"load {la:.2f} >= {threshold}; waiting up to {minutes:g} min for a quiet machine")
    while la >= threshold and time.time() < deadline:
        time.sleep(5)
        la = loadavg()
    if la >= threshold:
        log(f"load still {la:.2f}; going on (recorded)")
    return la


def timed(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 3600) -> dict:
    """Runs `cmd`; wall seconds, peak RSS (MB), exit code, output."""
    out_path = cwd / ".peers-out.txt"
    with open(out_path, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        # A blocking wait4 (no polling that would compete for the CPUs); a
        # timer kills the command past `timeout`.
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    return {"seconds": wall, "rss_mb": ru.ru_maxrss / 1024.0, "rc": p.returncode, "output": text}


def tool_bin(name: str) -> str:
    p = VENV / "bin" / name
    return str(p)


def ensure_venv(tools: list[str]) -> None:
    need = [t for t in ("dvc", "snakemake") if t in tools and not Path(tool_bin(t)).exists()]
    if not need:
        return
    if not (VENV / "bin" / "python").exists():
        log(f"creating venv {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    log(f"pip install {' '.join(need)} into {VENV}")
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *need], check=True)


def version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"unknown ({e})"


def machine() -> dict:
    model = ""
    mem = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem,
            "kernel": platform.release(), "python": platform.python_version()}


def fs_type(path: Path) -> str:
    r = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True)
    lines = r.stdout.splitlines()
    return lines[1].split()[1] if len(lines) > 1 else "?"


# -------------------------------------------------------------- generators


def half(n: int) -> int:
    return n // 2


def write_inputs(d: Path, n: int) -> None:
    (d / "data").mkdir(parents=True)
    for i in range(half(n)):
        (d / "data" / f"in_{i}.txt").write_text(f"input {i}\n")


def gen_engine(d: Path, n: int, change: str) -> Path:
    """A template of shell stages (see engine/core/src/shell.rs: inputs appear
    under inputs/STAGE/OUTPUT/, declared outputs are collected)."""
    a = str(d)
    lines = ["name: peers", "stages:"]
    for i in range(half(n)):
        lines += [
            f"  extract_{i}:",
            "    uses: shell",
        ]
        if change == "deps":
            lines.append(f"    deps: [data/in_{i}.txt]")
        env = ', env: { IN0: "{{ in0 }}" }' if (change == "set" and i == 0) else ""
        lines.append(
            f'    with: {{ run: "cat {a}/data/in_{i}.txt > ext.txt && echo extract_{i} >> {a}/ran.log", '
            f"outputs: {{ out: ext.txt }}{env} }}"
        )
    for i in range(half(n)):
        lines += [
            f"  train_{i}:",
            "    uses: shell",
            f"    needs: [extract_{i}]",
            f'    with: {{ run: "cat inputs/extract_{i}/out/ext.txt > train.txt && echo train_{i} >> {a}/ran.log", '
            "outputs: { out: train.txt } }",
        ]
    lines += [
        "  report:",
        "    uses: shell",
        "    needs: [" + ", ".join(f"train_{i}" for i in range(half(n))) + "]",
        f'    with: {{ run: "cat inputs/*/out/train.txt > report.txt && echo report >> {a}/ran.log", '
        "outputs: { out: report.txt } }",
    ]
    name = "pipeline.yaml.j2" if change == "set" else "pipeline.yaml"
    p = d / name
    p.write_text("\n".join(lines) + "\n")
    return p


def gen_snakemake(d: Path, n: int) -> None:
    # Idiomatic Snakemake: two wildcard rules and a gather rule (the same N+1
    # jobs as the other tools' explicit stages).
    (d / "Snakefile").write_text(f"""\
IDS = range({half(n)})

rule report:
    input: expand("out/train_{{i}}.txt", i=IDS)
    output: "out/report.txt"
    shell: "cat {{input}} > {{output}} && echo report >> ran.log"

rule train:
    input: "out/ext_{{i}}.txt"
    output: "out/train_{{i}}.txt"
    shell: "cat {{input}} > {{output}} && echo train_{{wildcards.i}} >> ran.log"

rule extract:
    input: "data/in_{{i}}.txt"
    output: "out/ext_{{i}}.txt"
    shell: "cat {{input}} > {{output}} && echo extract_{{wildcards.i}} >> ran.log"
""")


def gen_dvc(d: Path, n: int) -> None:
    lines = ["stages:"]
    for i in range(half(n)):
        lines += [
            f"  extract_{i}:",
            f"    cmd: mkdir -p out && cat data/in_{i}.txt > out/ext_{i}.txt && echo extract_{i} >> ran.log",
            f"    deps: [data/in_{i}.txt]",
            f"    outs: [out/ext_{i}.txt]",
        ]
    for i in range(half(n)):
        lines += [
            f"  train_{i}:",
            f"    cmd: cat out/ext_{i}.txt > out/train_{i}.txt && echo train_{i} >> ran.log",
            f"    deps: [out/ext_{i}.txt]",
            f"    outs: [out/train_{i}.txt]",
        ]
    trains = " ".join(f"out/train_{i}.txt" for i in range(half(n)))
    lines += [
        "  report:",
        f"    cmd: cat {trains} > out/report.txt && echo report >> ran.log",
        "    deps: [" + ", ".join(f"out/train_{i}.txt" for i in range(half(n))) + "]",
        "    outs: [out/report.txt]",
    ]
    (d / "dvc.yaml").write_text("\n".join(lines) + "\n")


# -------------------------------------------------------------- one tool


class Case:
    """One tool at one N in one fresh directory."""

    def __init__(self, tool: str, n: int, root: Path, args):
        self.tool, self.n, self.args = tool, n, args
        self.dir = root / f"{tool}-{n}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        write_inputs(self.dir, n)
        self.env = dict(os.environ)
        if tool == "engine":
            self.pipeline = gen_engine(self.dir, n, args.engine_change)
        elif tool == "snakemake":
            gen_snakemake(self.dir, n)
        else:
            gen_dvc(self.dir, n)
            git = ["git", "-c", "init.defaultBranch=main"]
            subprocess.run([*git, "init", "-q"], cwd=self.dir, check=True)
            subprocess.run([tool_bin("dvc"), "init", "-q"], cwd=self.dir, check=True)
            subprocess.run([tool_bin("dvc"), "config", "core.analytics", "false"], cwd=self.dir, check=True)
            self.env["DVC_NO_ANALYTICS"] = "1"
            self.env["DVC_NO_UPDATER"] = "1"  # not a documented variable everywhere; harmless

    # Commands ------------------------------------------------------------
    def engine_sets(self, phase: str) -> list[str]:
        a = []
        if self.args.engine_change == "set":
            a += ["--set", "in0=" + (self.dir / "data/in_0.txt").read_text().strip()]
        if self.args.engine_change == "force" and phase in ("plan", "change"):
            a += ["--force", "extract_0"]
        return a

    def command(self, phase: str) -> list[str]:
        if self.tool == "engine":
            e = self.args.engine
            if phase == "plan":
                return [e, "plan", str(self.pipeline), *self.engine_sets(phase)]
            return [e, "run", str(self.pipeline), "--json", *self.engine_sets(phase)]
        if self.tool == "snakemake":
            s = [tool_bin("snakemake"), "--cores", str(self.args.cores)]
            return s + (["-n"] if phase == "plan" else [])
        d = tool_bin("dvc")
        return [d, "repro", "--dry"] if phase == "plan" else [d, "repro"]

    # Checks --------------------------------------------------------------
    def expected(self, phase: str) -> set[str]:
        if phase == "cold":
            return ({f"extract_{i}" for i in range(half(self.n))}
                    | {f"train_{i}" for i in range(half(self.n))} | {"report"})
        if phase == "change":
            return {"extract_0", "train_0", "report"}
        return set()

    def expected_plan(self) -> int:
        return self.args.dvc_plan_expect if self.tool == "dvc" else 3

    def plan_count(self, out: str) -> int | None:
        if self.tool == "engine":
            m = re.search(r"(\d+) to run", out)
            return int(m.group(1)) if m else None
        if self.tool == "snakemake":
            if "Nothing to be done" in out:
                return 0
            m = re.search(r"^total\s+(\d+)", out, re.M)
            return int(m.group(1)) if m else None
        # dvc repro --dry: one "Running stage 'NAME':" per stage it would run
        return len(re.findall(r"^Running stage '", out, re.M))

    def outputs_written(self, since_ns: int) -> int | None:
        if self.tool == "engine":
            return None  # outputs live in the content-addressed store
        out = self.dir / "out"
        if not out.exists():
            return 0
        # DVC keeps a .gitignore there: not an output
        return sum(1 for f in out.iterdir()
                   if not f.name.startswith(".") and f.stat().st_mtime_ns >= since_ns)

    def report_text(self) -> str:
        if self.tool == "engine":
            tmp = self.dir / ".peers-get"
            if tmp.exists():
                shutil.rmtree(tmp)
            subprocess.run([self.args.engine, "get", "latest/report", str(tmp)], cwd=self.dir,
                           capture_output=True, check=False)
            return "".join(f.read_text() for f in tmp.rglob("*") if f.is_file())
        return (self.dir / "out" / "report.txt").read_text()

    def phase(self, phase: str, token: str | None = None) -> dict:
        ranlog = self.dir / "ran.log"
        ranlog.write_text("")
        la0 = loadavg()
        # mtime granularity: outputs written during the phase are >= since
        since = time.time_ns() - 1_000_000
        r = timed(self.command(phase), self.dir, self.env, self.args.timeout)
        rec = {"seconds": r["seconds"], "rss_mb": r["rss_mb"], "rc": r["rc"],
               "load_before": la0, "load_after": loadavg()}
        problems = []
        if r["rc"] != 0:
            problems.append(f"exit code {r['rc']}: {r['output'][-400:]}")
        ran = [s for s in ranlog.read_text().split() if s]
        exp = self.expected(phase)
        if phase == "plan":
            exp = set()
        if sorted(ran) != sorted(exp):
            extra = sorted(set(ran) - exp)[:5]
            missing = sorted(exp - set(ran))[:5]
            problems.append(f"ran {len(ran)} stages, expected {len(exp)}"
                            f" (extra {extra}, missing {missing}, duplicates {len(ran) - len(set(ran))})")
        written = self.outputs_written(since)
        if written is not None and written != len(exp):
            problems.append(f"{written} outputs written, expected {len(exp)}")
        rec["ran"] = len(ran)
        rec["outputs_written"] = written
        if self.tool == "engine" and phase != "plan":
            m = re.findall(r'^\{"counts":(\{[^}]*\})', r["output"], re.M)
            counts = json.loads(m[-1]) if m else {}
            rec["engine_counts"] = counts
            # the slowest task by the engine's own clock (a diagnostic, not checked)
            slow = ("", 0.0)
            for line in r["output"].splitlines():
                if line.startswith('{"event":"task_finished"'):
                    ev = json.loads(line)
                    if ev.get("status") == "done" and ev.get("seconds", 0) > slow[1]:
                        slow = (ev["task"], ev["seconds"])
            rec["slowest_task"] = slow
            if counts.get("done", 0) != len(exp):
                problems.append(f"engine reports {counts}, expected done={len(exp)}")
        if phase == "plan":
            c = self.plan_count(r["output"])
            rec["would_run"] = c
            if c != self.expected_plan():
                problems.append(f"dry run says {c} would run, expected {self.expected_plan()}")
        if phase == "change" and token is not None:
            txt = self.report_text()
            rec["report_has_change"] = token in txt
            if token not in txt:
                problems.append("the changed input did not reach the report")
        rec["valid"] = not problems
        rec["problems"] = problems
        return rec


def run_case(tool: str, n: int, rep: int, root: Path, args) -> dict:
    c = Case(tool, n, root, args)
    res = {}
    res["cold"] = c.phase("cold")
    log(f"{tool} N={n + 1} rep {rep}: cold {res['cold']['seconds']:.2f} s"
        f" {'ok' if res['cold']['valid'] else 'INVALID ' + '; '.join(res['cold']['problems'])}")
    if not res["cold"]["valid"]:
        return res
    time.sleep(1.1)  # outputs of the next phase get a later mtime than the cold ones
    res["noop"] = c.phase("noop")
    token = f"changed-{uuid.uuid4().hex[:12]}"
    (c.dir / "data" / "in_0.txt").write_text(token + "\n")
    res["plan"] = c.phase("plan")
    time.sleep(0.05)
    res["change"] = c.phase("change", token)
    log(f"{tool} N={n + 1} rep {rep}: " + ", ".join(
        f"{p} {res[p]['seconds']:.2f} s{'' if res[p]['valid'] else ' INVALID'}" for p in PHASES[1:]))
    for p in PHASES:
        if not res[p]["valid"]:
            log(f"  {p}: {'; '.join(res[p]['problems'])}")
    if not args.keep:
        shutil.rmtree(c.dir, ignore_errors=True)
    return res


# ------------------------------------------------------------- reporting


def summarize(results: dict) -> dict:
    """results["runs"][tool][N] = list of reps -> medians."""
    out = {}
    for tool, by_n in results["runs"].items():
        for n, reps in by_n.items():
            for p in PHASES:
                xs = [r[p] for r in reps if p in r]
                if not xs:
                    continue
                out.setdefault(int(n), {}).setdefault(tool, {})[p] = {
                    "seconds": statistics.median(x["seconds"] for x in xs),
                    "rss_mb": max(x["rss_mb"] for x in xs),
                    "reps": len(xs),
                    "valid": all(x["valid"] for x in xs),
                    "load": max(max(x["load_before"], x["load_after"]) for x in xs),
                }
    return out


def table(results: dict) -> str:
    s = summarize(results)
    meta = results.get("meta", {})
    lines = []
    for n in sorted(s):
        lines.append(f"### {n + 1} stages (N = {n})\n")
        lines.append("| tool | cold | no-op | plan (1 changed) | one input changed | peak RSS | reps | max load |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        best = {}
        for p in PHASES:
            vals = [v[p]["seconds"] for v in s[n].values() if p in v and v[p]["valid"]]
            best[p] = min(vals) if vals else None
        for tool in TOOLS:
            if tool not in s[n]:
                continue
            v = s[n][tool]
            cells = []
            for p in PHASES:
                if p not in v:
                    cells.append("not run")
                    continue
                x = v[p]
                c = f"{x['seconds']:.2f} s"
                if not x["valid"]:
                    c += " **INVALID**"
                elif best[p]:
                    c += f" ({x['seconds'] / best[p]:.1f}x)" if x["seconds"] > best[p] * 1.005 else " (best)"
                cells.append(c)
            rss = max(x["rss_mb"] for x in v.values())
            reps = min(x["reps"] for x in v.values())
            load = max(x["load"] for x in v.values())
            name = tool + (f" {meta.get('versions', {}).get(tool, '')}" if tool != "engine" else "")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {rss:.0f} MB | {reps} | {load:.2f} |")
        lines.append("")
    return "\n".join(lines)


def svg(results: dict) -> str:
    """Cold (solid) and no-op (dashed) median seconds against N, log-log."""
    import math

    s = summarize(results)
    colors = {"engine": "#1f77b4", "snakemake": "#2ca02c", "dvc": "#d62728"}
    pts = {(t, p): [] for t in TOOLS for p in ("cold", "noop")}
    for n in sorted(s):
        for t, v in s[n].items():
            for p in ("cold", "noop"):
                if p in v:
                    pts[(t, p)].append((n + 1, v[p]["seconds"], v[p]["valid"]))
    allx = [x for v in pts.values() for x, _, _ in v] or [10, 10000]
    ally = [y for v in pts.values() for _, y, _ in v] or [0.1, 100]
    x0, x1 = 10 ** math.floor(math.log10(min(allx))), 10 ** math.ceil(math.log10(max(allx)))
    y0, y1 = 10 ** math.floor(math.log10(min(ally))), 10 ** math.ceil(math.log10(max(ally)))
    if x1 == x0:
        x1 *= 10
    if y1 == y0:
        y1 *= 10
    W, H, L, R, T, B = 640, 420, 70, 150, 30, 50

    def X(x):
        return L + (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) * (W - L - R)

    def Y(y):
        return H - B - (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">Pipeline of N trivial shell stages: wall time against N (log-log)</text>']
    loads = [v[p]["load"] for n in s for v in s[n].values() for p in v]
    m = results.get("meta", {}).get("machine", {})
    o.append(f'<text x="{L}" y="{H - 1}" font-size="10">{m.get("nproc", "?")} CPUs, {m.get("cpu", "")};'
             f' last run {results.get("meta", {}).get("date", "?")}; max 1-min load during runs'
             f' {max(loads) if loads else 0:.2f}</text>')
    e = math.log10(x0)
    while 10 ** e <= x1 * 1.0001:
        x = X(10 ** e)
        o.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        o.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{10 ** e:g}</text>')
        e += 1
    e = math.log10(y0)
    while 10 ** e <= y1 * 1.0001:
        y = Y(10 ** e)
        o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:g} s</text>')
        e += 1
    o.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">stages (N + 1)</text>')
    ly = T + 10
    for t in TOOLS:
        for p in ("cold", "noop"):
            v = pts[(t, p)]
            if not v:
                continue
            dash = "" if p == "cold" else ' stroke-dasharray="5,4"'
            path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y, _ in v)
            o.append(f'<polyline points="{path}" fill="none" stroke="{colors[t]}" stroke-width="2"{dash}/>')
            for x, y, ok in v:
                fill = colors[t] if ok else "white"
                o.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="4" fill="{fill}" stroke="{colors[t]}"/>')
            o.append(f'<line x1="{W - R + 10}" y1="{ly}" x2="{W - R + 34}" y2="{ly}" stroke="{colors[t]}" stroke-width="2"{dash}/>')
            o.append(f'<text x="{W - R + 40}" y="{ly + 4}">{t} {"cold" if p == "cold" else "no-op"}</text>')
            ly += 18
    o.append(f'<text x="{W - R + 10}" y="{ly + 10}" font-size="10">hollow: check failed</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def write_reports(results: dict, out: Path, md: Path | None, svg_path: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    t = table(results)
    (out / "table.md").write_text(t)
    svg_path.write_text(svg(results))
    if md and md.exists():
        text = md.read_text()
        a, b = "<!-- peers:table:start -->", "<!-- peers:table:end -->"
        if a in text and b in text:
            meta = results["meta"]
            m = meta["machine"]
            head = (f"Machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory']} RAM, Linux {m['kernel']},"
                    f" {meta.get('fs', '?')} file system. Versions: engine `{meta['versions'].get('engine', '?')}`"
                    f" (`{meta.get('engine_path', '?')}`, change via `{meta.get('engine_change', '?')}`),"
                    f" Snakemake {meta['versions'].get('snakemake', '-')}, DVC {meta['versions'].get('dvc', '-')},"
                    f" {meta['versions'].get('git', '')}, Python {m['python']}. Last run {meta.get('date', '?')}."
                    " Start-up alone (`--version`, median of 5): "
                    + ", ".join(f"{k} {x:.2f} s" for k, x in meta.get("startup_s", {}).items()) + ".\n\n")
            pre, rest = text.split(a, 1)
            _, post = rest.split(b, 1)
            md.write_text(pre + a + "\n" + head + t + "\n" + b + post)


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="50,500,5000", help="N values (stages = N + 1)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default="engine,snakemake,dvc")
    ap.add_argument("--engine", default=os.environ.get("ENGINE", str(REPO / "target/release/engine")))
    ap.add_argument("--engine-change", choices=("set", "force", "deps"), default="set",
                    help="how the engine sees data/in_0.txt change (see the top of this file)")
    ap.add_argument("--engine-deps", action="store_true", help="same as --engine-change deps")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--workdir", default="/tmp/peers-bench", help="where the pipelines run (deleted after)")
    ap.add_argument("--quiet-load", type=float, default=0.5, help="wait for the 1-min load below this")
    ap.add_argument("--quiet-wait", type=float, default=10, help="... at most this many minutes before each tool and N")
    ap.add_argument("--max-dvc", type=int, default=500)
    ap.add_argument("--max-snakemake", type=int, default=5000)
    ap.add_argument("--cores", type=int, default=os.cpu_count(), help="snakemake --cores")
    ap.add_argument("--dvc-plan-expect", type=int, default=1,
                    help="stages `dvc repro --dry` lists after one input changed (it only lists the stage"
                         " whose own dependency changed)")
    ap.add_argument("--timeout", type=float, default=3600, help="per command, seconds")
    ap.add_argument("--fresh", action="store_true", help="drop earlier results in OUT/results.json")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark directories")
    ap.add_argument("--update-md", default=str(HERE / "BENCHMARKS.md"))
    ap.add_argument("--svg", default=str(HERE / "time_vs_n.svg"))
    ap.add_argument("--report-only", action="store_true", help="only regenerate table, SVG and markdown")
    args = ap.parse_args()
    if args.engine_deps:
        args.engine_change = "deps"
    args.engine = str(Path(args.engine).resolve())
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t}")
    sizes = [int(x) for x in args.sizes.split(",") if x]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rj = out / "results.json"
    results = json.loads(rj.read_text()) if rj.exists() and not args.fresh else {"runs": {}, "meta": {}}
    if args.report_only:
        write_reports(results, out, Path(args.update_md), Path(args.svg))
        return 0

    if "engine" in tools and not Path(args.engine).exists():
        ap.error(f"engine binary {args.engine} not found (build it, or give --engine / ENGINE=)")
    ensure_venv(tools)
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    meta = results["meta"]
    meta["machine"] = machine()
    meta["fs"] = fs_type(root)
    meta["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    v = meta.setdefault("versions", {})
    v["git"] = version(["git", "--version"])
    if "engine" in tools:
        v["engine"] = version([args.engine, "--version"])
        meta["engine_path"] = args.engine
        meta["engine_change"] = args.engine_change
    if "snakemake" in tools:
        v["snakemake"] = version([tool_bin("snakemake"), "--version"])
        meta["snakemake_cores"] = args.cores
    if "dvc" in tools:
        v["dvc"] = version([tool_bin("dvc"), "--version"])
    # Start-up cost alone (`--version`), median of 5: the floor under every phase.
    st = meta.setdefault("startup_s", {})
    for t in tools:
        cmd = [args.engine, "--version"] if t == "engine" else [tool_bin(t), "--version"]
        st[t] = statistics.median(timed(cmd, root, None, 120)["seconds"] for _ in range(5))
    log(f"machine {meta['machine']}, fs {meta['fs']}, versions {v}, start-up {st}")

    for n in sizes:
        for tool in tools:
            if tool == "dvc" and n > args.max_dvc or tool == "snakemake" and n > args.max_snakemake:
                log(f"skip {tool} N={n} (over --max-{tool})")
                continue
            reps = []
            wait_quiet(args.quiet_load, args.quiet_wait)
            for rep in range(args.reps):
                reps.append(run_case(tool, n, rep, root, args))
                if not reps[-1]["cold"]["valid"]:
                    break
            results["runs"].setdefault(tool, {})[str(n)] = reps
            write_reports(results, out, Path(args.update_md), Path(args.svg))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
