"""What a progress bar costs per update, as `roomfuse render` calls it (one update a
frame, with a note), against no bar at all and, optionally, the bar of another revision.

    .venv/bin/python benchmarks/progress_cost.py
    .venv/bin/python benchmarks/progress_cost.py --compare 0137f23   # the hand-written bar before tqdm

Both output kinds are timed: a terminal (tqdm redraws a line) and a log (a line every 10 %).
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_update_us(Progress, stream, n: int, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        bar = Progress(n, "render", stream=stream) if Progress else None
        t0 = time.perf_counter()
        for i in range(n):
            note = f"grow {i % 7 + 0.5:.1f} ms"  # render formats this every frame either way
            if bar is not None:
                bar.update(note=note)
        best = min(best, (time.perf_counter() - t0) / n)
        if bar is not None:
            bar.close()
    return best * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--updates", type=int, default=20000, help="updates per run (default: %(default)s)")
    p.add_argument("--compare", metavar="REV", help="also time roomfuse/progress.py as it was at this git revision")
    args = p.parse_args()
    bars = {"no bar": None, "tqdm (this tree)": load(ROOT / "roomfuse" / "progress.py", "progress_now").Progress}
    if args.compare:
        old = subprocess.run(["git", "show", f"{args.compare}:roomfuse/progress.py"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        path = Path(tempfile.mkdtemp()) / "progress_then.py"
        path.write_text(old)
        bars[f"progress.py at {args.compare}"] = load(path, "progress_then").Progress
    print(f"{'bar':28s} {'terminal':>10s} {'log':>10s}   (us per update, best of 5 x {args.updates})")
    for name, Progress in bars.items():
        tty = per_update_us(Progress, Terminal(), args.updates)
        log = per_update_us(Progress, io.StringIO(), args.updates)
        print(f"{name:28s} {tty:10.2f} {log:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
