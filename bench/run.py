"""Scaling benchmark: placer against the baselines on generated fleets of size S, M, L and XL.

    python -m bench.run [--size S,M,L,XL] [--seed 0] [--methods ...] [--time-limit SECONDS] [--out FILE]

``SIZE=S`` in the environment does what ``--size S`` does, ``METHODS=placer`` what ``--methods
placer`` does, and ``TIME_LIMIT=30`` what ``--time-limit 30`` does: every size planned in that
time instead of its own (S and M 5 s, L 30 s, XL 120 s), into
``bench/results-30s.json`` so that ``results.json`` keeps the issue's limits; ``SEED=1`` does what
``--seed 1`` does: other fleets, into their own ``bench/results-seed1.json``
(``results-30s-seed1.json`` with ``TIME_LIMIT=30``), so that ``results.json`` keeps seed 0's, the
published results. Costs are set against the best bound of the methods run or the one the seed's
results at the sizes' own limits (``results.json``, ``results-seed1.json``) hold for the same fleet,
the higher (so too at a size's own limit where none of the bound methods runs). Every method runs
in its own process (``bench.worker``), so that its peak memory (ru_maxrss) is its own; the fleet is
generated there first and not timed. Each size prints, per method: cost (``placer.cost.price``,
churn included), cost relative to the best lower bound any method proved, the method's own
bound and gap, wall time, peak memory, and the checks (hard constraints, required-policy
violations). The re-plan row runs a first plan, changes every demand rate by up to +/-5%,
and re-plans from the first plan's replicas: its time against the first plan's, and the
replicas it starts and stops (with the same re-plan at 100x the churn price beside it, for
the fewest moves the change needs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:  # Ctrl-C while numpy and placer load (the first half second) is said as later, not as a traceback
    from bench.generate import SIZES, TIME_LIMITS
    from placer.interrupts import interrupted, sigterm_interrupts
    from placer.planfile import atomic_write, check_writable
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("Interrupted. Nothing was run, nor any results written.", file=sys.stderr)
    raise SystemExit(130) from None

DEFAULT_METHODS = ("lp-bound", "model-bound", "mip-bound", "placer", "full-mip", "cheapest", "most-allocated", "replan")
LABELS = {
    "lp-bound": "(c) LP relaxation",
    "model-bound": "(c') Lagrangian by model",
    "mip-bound": "(c'') HiGHS' bound, whole model",
    "placer": "placer",
    "full-mip": "(d) full MIP, OR-Tools MathOpt/HiGHS",
    "cheapest": "(a) cheapest pool",
    "most-allocated": "(b) most-allocated",
    "replan": "placer re-plan (5% demand change)",
}
BOUND_METHODS = ("lp-bound", "model-bound", "mip-bound")
MEMORY_CAP = 16 * 2**30  # address space per worker: a method that needs more fails instead of swapping


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _git(where: Path, *args: str) -> str | None:
    """``git args`` in ``where``: its output, or None where it failed (no checkout, no git)."""
    try:
        got = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return got.stdout if got.returncode == 0 else None


def run_stamp(where: Path | None = None) -> dict[str, str | None]:
    """When this run started (UTC) and the commit it ran at (``git rev-parse --short HEAD`` in
    ``where``, bench's checkout by default; None where there is none), written on each of its rows:
    a results file keeps the rows of earlier runs beside them. A tree with uncommitted changes to
    tracked files is not the commit's: "abc1234-dirty", as ``git describe --dirty`` says (the
    results files bench writes itself, bench/results*.json, are not counted)."""
    where = where or Path(__file__).resolve().parent
    commit = (_git(where, "rev-parse", "--short", "HEAD") or "").strip()
    if commit:
        changed = _git(where, "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                       ":(top,exclude)bench/results*.json")
        if changed is None or changed.strip():  # unknown is not said clean
            commit += "-dirty"
    return {"ran_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit or None}


def machine_now() -> dict[str, Any]:
    """The machine a run ran on, written on each of its rows (a results file keeps rows of other
    runs, maybe on other machines, beside them): its CPUs, Python, and the load average over 1, 5
    and 15 minutes as the run starts, before its own workers add to it (None where the system has
    none): on a shared machine another's work slows every method."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "load_average": load}


def run_worker(size: str, method: str, seed: int, time_limit: float) -> dict[str, Any]:
    wall_cap = {"lp-bound": 1500.0, "model-bound": 1500.0, "mip-bound": 12 * time_limit + 600,
                "replan": 4 * time_limit + 300, "full-mip": time_limit + 180}.get(method, 2 * time_limit + 240)
    cmd = [sys.executable, "-m", "bench.worker", size, method, "--seed", str(seed), "--time-limit", str(time_limit)]
    started = time.monotonic()
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=wall_cap, preexec_fn=_limit_memory,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"size": size, "method": method, "status": f"killed after {wall_cap:.0f}s",
                "wall": time.monotonic() - started}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"size": size, "method": method, "status": f"failed (exit {proc.returncode}): {tail[0][:120]}",
                "wall": time.monotonic() - started}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except ValueError as e:  # a line of its own output, or one cut short: the run goes on to the next method
        return {"size": size, "method": method, "wall": time.monotonic() - started,
                "status": f"failed (exit {proc.returncode}): its last line is not a result "
                          f"({getattr(e, 'msg', e)}): {lines[-1][:120]}"}
    return result


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else None


def best_bound(rows: list[dict[str, Any]]) -> float | None:
    bounds = [_num(r.get("bound")) for r in rows if r.get("method") != "replan"]
    finite = [b for b in bounds if b is not None]
    return max(finite) if finite else None


def vs_bound(row: dict[str, Any], bound: float | None) -> float | None:
    """A method's cost relative to the best bound; none for a re-plan, which prices another fleet
    (the demand changed), so that no bound of this one holds for it."""
    cost = _num(row.get("cost"))
    return cost / bound - 1 if cost is not None and bound and row.get("method") != "replan" else None


def earlier_rows(entry: Any, size: str, seed: int, limit: float) -> tuple[list[dict[str, Any]], str | None]:
    """The rows a results file holds for ``size`` that a run of the same fleet (size, seed) at the
    same limit keeps, and, where the file's rows are of another fleet or limit (none kept), which."""
    if not isinstance(entry, dict) or not isinstance(entry.get("methods"), list):
        return [], None
    models, pools = SIZES[size]
    if (entry.get("seed"), _num(entry.get("time_limit")), entry.get("models", models), entry.get("pools", pools)) \
            != (seed, limit, models, pools):
        return [], (f"seed {entry.get('seed')}, limit {entry.get('time_limit')}s, "
                    f"{entry.get('models')} models x {entry.get('pools')} pools")
    # a row that says its own seed or limit must say this one's (a failed row says neither)
    return [r for r in entry["methods"] if isinstance(r, dict) and r.get("seed", seed) == seed
            and _num(r.get("time_limit", limit)) == limit], None


def merge_rows(kept: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``kept`` with each method run now in its place (``fresh``'s row instead of every row of that
    method), and the methods it did not hold after them, in the order run."""
    new = {r.get("method"): r for r in fresh}
    placed: set[Any] = set()  # any other row of a method placed is dropped
    rows = []
    for r in kept:
        method = r.get("method")
        if method not in new:
            rows.append(r)
        elif method not in placed:
            rows.append(new[method])
            placed.add(method)
    rows.extend(r for method, r in new.items() if method not in placed)
    return rows


def ran(row: dict[str, Any], stamp: dict[str, str | None]) -> str:
    """The table's run column: "this run", or the time and commit an earlier row records."""
    if row.get("ran_at") == stamp["ran_at"] and row.get("commit") == stamp["commit"]:
        return "this run"
    at = str(row.get("ran_at") or "")[:16].replace("T", " ")
    return " ".join(p for p in (at, str(row.get("commit") or "")) if p) or "earlier, not recorded"


def render(size: str, rows: list[dict[str, Any]], limit: float, bound: float | None,
           stamp: dict[str, str | None] | None = None, kept_from: Path | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    models, pools = SIZES[size]
    title = f"size {size}: {models:,} models x {pools:,} pools, limit {limit:g}s"
    if bound is not None:
        title += f", best bound {bound:,.2f} USD/h"
    table = Table(title=title, title_justify="left")
    for col, just in (("method", "left"), ("cost USD/h", "right"), ("vs best bound", "right"),
                      ("own bound", "right"), ("own gap", "right"), ("wall s", "right"), ("peak MiB", "right"),
                      ("checks", "left"), ("status", "left"), *((("run", "left"),) if stamp else ())):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        cost = _num(r.get("cost"))
        ratio = vs_bound(r, bound)
        rel = f"{ratio:+.2%}" if ratio is not None else ""
        own = _num(r.get("bound"))
        gap = _num(r.get("gap"))
        checks = ""
        if r.get("hard") is not None:
            checks = "ok" if r["hard"] == 0 and r.get("required_violations") == 0 else (
                f"{r['hard']} hard, {r['required_violations']} required broken")
            if (_num(r.get("unmet")) or 0.0) >= 0.5:
                checks += f", unmet {r['unmet']:,.0f} USD/h"
        status = str(r.get("status", ""))
        wall = _num(r.get("wall"))
        wall_text = f"{wall:.2f}" if wall is not None else ""
        if r.get("method") == "replan":
            first = _num(r.get("first_wall"))
            if first:
                wall_text = f"{wall:.2f} ({wall / first:.0%} of {first:.2f})" if wall is not None else ""
            mv = r.get("moves")
            if mv:
                status += f"; moved +{mv['started']}/-{mv['stopped']}"
                sticky = r.get("sticky_moves")
                if sticky:
                    status += f" (100x churn: +{sticky['started']}/-{sticky['stopped']})"
                    run, run_sticky = _num(r.get("running_usd_per_hour")), _num(r.get("sticky_running_usd_per_hour"))
                    if run is not None and run_sticky is not None:
                        extra = mv["started"] - sticky["started"]
                        status += (f"; {extra:+d} starts for {run_sticky - run:,.2f} USD/h less running cost "
                                   f"(churn {_num(r.get('churn_usd')) or 0:,.2f} USD once)")
        # a worker's status ends with its last line of output, which may hold [brackets]: not markup
        table.add_row(escape(LABELS.get(str(r.get("method")), str(r.get("method")))),
                      f"{cost:,.2f}" if cost is not None else "",
                      rel, f"{own:,.2f}" if own is not None else "", f"{gap:.2%}" if gap is not None else "",
                      wall_text, f"{r['peak_mib']:,.0f}" if _num(r.get("peak_mib")) else "", checks, escape(status),
                      *((escape(ran(r, stamp)),) if stamp else ()))
    if stamp:
        table.caption = escape(f"this run: {str(stamp['ran_at'])[:16].replace('T', ' ')} UTC at {stamp['commit'] or 'no commit'}"
                               + (f"; the other rows are kept from {kept_from}, as run before"
                                  if kept_from and any(ran(r, stamp) != "this run" for r in rows) else ""))
        table.caption_justify = "left"
    # a terminal's width (or COLUMNS'): rows wider than the terminal wrap out of line; 200 for a
    # file or a pipe, where a long status need not wrap
    terminal = os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty()
    Console(width=None if terminal else 200).print(table)


def proven_bound(size: str, seed: int) -> float | None:
    """The best bound the seed's results at the sizes' own limits hold for the fleet of ``size``
    at ``seed`` (``results.json`` for seed 0, ``results-seed<seed>.json`` for another): a bound of
    the fleet, whatever time a plan is given (its bound methods take minutes)."""
    try:
        got = json.loads(default_out(None, seed).read_text())["sizes"][size]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _num(got.get("best_bound")) if isinstance(got, dict) and got.get("seed") == seed else None


def default_out(time_limit: float | None, seed: int = 0) -> Path:
    """results.json at each size's own limit and seed 0, the published results; results-<seconds>s.json
    at another limit; another seed's beside them, its own (results-seed1.json, results-30s-seed1.json),
    so that an exploratory seed never replaces the published rows."""
    here = Path(__file__).resolve().parent
    name = "results" + ("" if time_limit is None else f"-{time_limit:g}s") + ("" if seed == 0 else f"-seed{seed}")
    return here / f"{name}.json"


def _cannot_write(e: OSError) -> str:
    """planfile's 'cannot write PATH: why' of the results, and what to do."""
    said = str(e).replace("cannot write ", "cannot write the results to ", 1)
    return said if "; give " in said else f"{said}; give another --out"


def read_results(path: Path) -> dict[str, Any]:
    """The results ``path`` holds, to which the rows run are written beside those it keeps (a
    missing or empty file starts afresh); refused before anything runs where they could not be
    written, or where the file holds what is not results (its rows would be lost)."""
    where = path.parent if path.parent != Path("") else Path(".")
    if path.is_dir():
        raise SystemExit(f"cannot write the results to {path}: it is a directory; give a file with --out")
    if not where.is_dir():
        raise SystemExit(f"cannot write the results to {path}: no directory {where}; make it or give another --out")
    try:
        check_writable(path)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except OSError as e:
        raise SystemExit(_cannot_write(e)) from None
    except UnicodeDecodeError as e:
        raise SystemExit(f"{path}: not results JSON (byte {e.start} is not UTF-8), and its rows would be lost: "
                         "move it away or give another --out") from None
    try:
        results = json.loads(text) if text.strip() else {}
    except ValueError as e:
        line = getattr(e, "lineno", None)
        raise SystemExit(f"{path}{f':{line}' if line else ''}: not results JSON ({getattr(e, 'msg', e)}), and its "
                         "rows would be lost: fix it (a merge conflict's markers?), move it away or give "
                         "another --out") from None
    if not isinstance(results, dict) or not isinstance(results.setdefault("sizes", {}), dict):
        raise SystemExit(f"{path}: not a results file (a JSON object whose 'sizes' is an object), and what it "
                         "holds would be lost: move it away or give another --out")
    return results


def _limit_from_env() -> float | None:
    text = os.environ.get("TIME_LIMIT", "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"TIME_LIMIT must be a number of seconds, not {text!r}") from None


def _seed_from_env() -> int:
    text = os.environ.get("SEED", "").strip()
    try:
        seed = int(text) if text else 0
    except ValueError:
        seed = -1
    if seed < 0:
        raise SystemExit(f"SEED must be a whole number 0 or more, not {text!r}")
    return seed


def run_size(size: str, methods: list[str], seed: int, time_limit: float | None, results: dict[str, Any],
             out_path: Path, stamp: dict[str, str | None], machine: dict[str, Any]) -> None:
    """Run ``methods`` at ``size``, writing the results to ``out_path`` after each (a run stopped
    keeps the rows it finished), then print the size's table."""
    limit = TIME_LIMITS[size] if time_limit is None else time_limit
    kept, other = earlier_rows(results["sizes"].get(size), size, seed, limit)
    if other:
        print(f"[bench] {size}: {out_path} holds its rows of {other}; this run's (seed {seed}, "
              f"limit {limit:g}s) replace them all, as rows of another fleet or limit are not merged",
              file=sys.stderr, flush=True)
    # the fleet's bound holds at any limit: taken from results.json at another limit, or where
    # no bound method runs (METHODS=placer at the size's own limit had none, nor its table a ratio)
    fresh = time_limit is None and any(m in BOUND_METHODS for m in methods)
    known = None if fresh else proven_bound(size, seed)  # read before this size is written
    ran_now: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    bound: float | None = None
    for method in methods:
        print(f"[bench] {size} {method} ...", file=sys.stderr, flush=True)
        ran_now.append({**run_worker(size, method, seed, limit), **stamp, "machine": machine})
        # every row the file held for the size and did not run now is kept, each with its run's time,
        # commit and machine; a method run now replaces its row
        rows = merge_rows(kept, ran_now)
        bound = best_bound(rows)
        if known is not None and (bound is None or known > bound):
            bound = known  # the fleet's, from results.json: no need to run its bounds again
        for r in rows:
            r["vs_best_bound"] = vs_bound(r, bound)
        results["sizes"][size] = {"models": SIZES[size][0], "pools": SIZES[size][1], "time_limit": limit,
                                  "seed": seed, "best_bound": bound, "methods": rows}
        # each row says its own machine: the file's one machine described the latest run alone, not
        # the rows kept from others (nothing reads it)
        results.pop("machine", None)
        try:  # a temporary file renamed over it: a write that fails or is stopped leaves the file as it was
            atomic_write(out_path, json.dumps(results, indent=2, default=str) + "\n")
        except OSError as e:
            raise SystemExit(_cannot_write(e)) from None
    render(size, rows, limit, bound, stamp, out_path)


def arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """The command line, its environment read where no option says (``--out`` made the default
    file where none is given), and its sizes and methods, each once; refused before anything runs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # SIZE, METHODS: set and empty is as unset (make bench SIZE= exports it empty)
    ap.add_argument("--size", default=os.environ.get("SIZE", "").strip() or "S,M,L,XL",
                    help="comma-separated sizes among " + ", ".join(SIZES) + " (env SIZE)")
    ap.add_argument("--seed", type=int, default=None,
                    help="the generator's seed, 0 or more (env SEED); another than 0 writes to its own "
                         "results-seed<seed>.json (results-<seconds>s-seed<seed>.json) unless --out says where")
    ap.add_argument("--methods", default=os.environ.get("METHODS", "").strip() or ",".join(DEFAULT_METHODS),
                    help="comma-separated: " + ", ".join(DEFAULT_METHODS) + " (env METHODS)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds per plan instead of each size's (env TIME_LIMIT); the results then go to "
                         "results-<seconds>s.json beside results.json unless --out says where")
    ap.add_argument("--out", default=None,
                    help="default: bench/results.json, the published results (seed 0, each size's own limit); "
                         "bench/results-<seconds>s.json with --time-limit, -seed<seed> before .json with --seed")
    args = ap.parse_args(argv)
    # SEED, TIME_LIMIT read only where no option gives them (a bad one was refused beside --seed 1)
    if args.seed is None:
        args.seed = _seed_from_env()
    if args.time_limit is None:
        args.time_limit = _limit_from_env()
    if args.time_limit is not None and not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise SystemExit(f"--time-limit must be a positive number of seconds, not {args.time_limit}")
    if args.seed < 0:
        raise SystemExit(f"--seed must be a whole number 0 or more, not {args.seed}")
    if args.out is None:
        args.out = str(default_out(args.time_limit, args.seed))
    # each once, in the order given (a method given twice ran twice, its second row replacing its first)
    sizes = list(dict.fromkeys(s.strip().upper() for s in args.size.split(",") if s.strip()))
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    # every argument is checked before the first method runs (a size takes minutes)
    for size in sizes:
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r} in --size (SIZE); sizes: {', '.join(SIZES)}")
    for method in methods:
        if method not in DEFAULT_METHODS:
            raise SystemExit(f"unknown method {method!r} in --methods (METHODS); methods: {', '.join(DEFAULT_METHODS)}")
    if not sizes or not methods:
        raise SystemExit("nothing to run: give at least one size (--size, SIZE) and one method (--methods, METHODS)")
    return args, sizes, methods


def main(argv: list[str] | None = None) -> None:
    # SIGTERM stops it as Ctrl-C does, from the first line (the arguments, the results file read,
    # git asked): the worker running is killed (subprocess.run's cleanup), not left to run on for
    # up to its wall cap, and the rows run before it stay written
    with sigterm_interrupts() as stopped_by:
        running: Path | None = None  # the results file, once the first method runs
        try:
            args, sizes, methods = arguments(argv)
            out_path = Path(args.out)
            results = read_results(out_path)
            stamp = run_stamp()
            machine = machine_now()  # its load average before the first worker adds to it
            running = out_path
            for size in sizes:
                run_size(size, methods, args.seed, args.time_limit, results, out_path, stamp, machine)
        except KeyboardInterrupt:
            said, status = interrupted(stopped_by[0])
            print((f"{said} Each row run before it is written to {running}; run the rest again with --size "
                   "and --methods") if running else f"{said} Nothing was run, nor any results written.",
                  file=sys.stderr)
            raise SystemExit(status) from None
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
