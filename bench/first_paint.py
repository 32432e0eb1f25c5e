"""Time from launching `llmtui` to its first screen painted, under a pseudo-terminal.

    .venv/bin/python bench/first_paint.py             # 5 launches
    .venv/bin/python bench/first_paint.py --quick     # 2 launches

Each launch starts `python -m llmtui` (no arguments: the app) in a new
pseudo-terminal of 100x32 and reads what it draws. "first paint" is the
moment the hardware screen's frame ("This machine" panel and the footer)
has been written; "detected" is when hardware detection's answer (the
recommended preset) is on screen, which happens later, in a worker thread.
Then Ctrl+Q quits the app.

Target: first paint <= 1.5 s (median). Writes bench/out/first_paint.json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import re
import select
import signal
import statistics
import struct
import sys
import termios
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TARGET_S = 1.5
ANSI = re.compile(rb"\x1b(\[[0-9;?<>=!]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\|[()][0-9A-Za-z]|[=>78cDEHMNOZ])")
PAINT_MARKERS = (b"This machine", b"palette")   # the machine panel's title, the footer
DETECTED_MARKER = b"Recommended:"


def launch(cmd: list[str], timeout: float, size: tuple[int, int]) -> dict:
    cols, rows = size
    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # child: the app on the pty
        os.environ["TERM"] = "xterm-256color"
        os.environ.pop("TEXTUAL", None)
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    raw = b""
    first_paint = detected = None
    deadline = start + timeout
    while time.perf_counter() < deadline and (first_paint is None or detected is None):
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        raw += chunk
        text = ANSI.sub(b"", raw)
        now = time.perf_counter() - start
        if first_paint is None and all(m in text for m in PAINT_MARKERS):
            first_paint = now
        if detected is None and DETECTED_MARKER in text:
            detected = now
    # quit: Ctrl+Q, then make sure the child is gone
    try:
        os.write(fd, b"\x11")
    except OSError:
        pass
    code = None
    end = time.perf_counter() + 10
    while time.perf_counter() < end:
        try:
            os.read(fd, 65536) if select.select([fd], [], [], 0.05)[0] else None
        except OSError:
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    return {"first_paint_s": first_paint, "detected_s": detected, "exit_code": code,
            "bytes": len(raw)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="2 launches")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=OUT / "first_paint.json")
    args = p.parse_args()
    if args.quick:
        args.repeats = 2
    OUT.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "llmtui"]
    os.chdir(REPO)
    runs = []
    for i in range(args.repeats):
        r = launch(cmd, args.timeout, (100, 32))
        runs.append(r)
        fp = "n/a" if r["first_paint_s"] is None else f"{r['first_paint_s']:.3f} s"
        dt = "n/a" if r["detected_s"] is None else f"{r['detected_s']:.3f} s"
        print(f"launch {i + 1}: first paint {fp}, hardware detected {dt}, exit {r['exit_code']}",
              flush=True)
    paints = [r["first_paint_s"] for r in runs if r["first_paint_s"] is not None]
    detects = [r["detected_s"] for r in runs if r["detected_s"] is not None]
    median = statistics.median(paints) if paints else None
    passed = median is not None and median <= TARGET_S and len(paints) == len(runs)
    print()
    print(f"first paint median: {'n/a' if median is None else f'{median:.3f} s'} "
          f"(target <= {TARGET_S} s: {'PASS' if passed else 'FAIL'})")
    if detects:
        print(f"hardware detected median: {statistics.median(detects):.3f} s (in a worker; "
              "the screen is usable before)")
    report = {"command": "python -m llmtui", "terminal": "100x32", "runs": runs,
              "first_paint_median_s": median,
              "detected_median_s": statistics.median(detects) if detects else None,
              "checks": [{"name": "launch to first paint (median)",
                          "value": None if median is None else round(median, 3), "unit": "s",
                          "target": f"<= {TARGET_S}", "passed": passed}]}
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
