"""How long one estimate takes: the wizard re-estimates on every keystroke.

    .venv/bin/python bench/estimate_speed.py              # 500 calls
    .venv/bin/python bench/estimate_speed.py --calls 20   # a quick look

Times `estimate()` for the rtx4060 preset with `training.batch_size = "auto"`
planned for an RTX 4060 on a 4-core CPU machine (the autotune search included),
after one warm-up call. Target: under 5 ms a call (the median), so typing in the
wizard never waits. Writes bench/out/estimate_speed.json. (This was a timed
assert in tests/test_estimate.py; a test suite on a busy machine is no clock.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TARGET_S = 0.005


def planned() -> tuple:
    from llmtui.engine.config.loading import load_config
    from llmtui.engine.planning.hardware import CpuInfo, HardwareInfo
    from llmtui.engine.planning.recommend import planned_hardware

    gib = 2**30
    cpu = CpuInfo(model="Bench CPU", physical_cores=4, logical_cores=8, total_ram_bytes=16 * gib,
                  available_ram_bytes=16 * gib, bf16_native=False, fp16_native=False,
                  flags=["avx", "avx2", "fma"])
    machine = HardwareInfo(cpu=cpu, gpus=[], torch_version="2.x", torch_cuda_available=False,
                           torch_cuda_version=None, torch_device_count=0, warnings=[])
    cfg = load_config("rtx4060")
    cfg.training.batch_size = "auto"
    return cfg, planned_hardware(machine, "RTX 4060")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--out", type=Path, default=OUT / "estimate_speed.json")
    args = p.parse_args()
    from llmtui.engine.planning.estimate import estimate

    cfg, hardware = planned()
    estimate(cfg, hardware=hardware)  # warm-up: imports and caches
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        estimate(cfg, hardware=hardware)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    passed = median < TARGET_S
    print(f"estimate(), auto batch on a planned RTX 4060: median {1000 * median:.2f} ms, "
          f"max {1000 * max(times):.2f} ms over {args.calls} calls; target < {1000 * TARGET_S:.0f} ms: "
          f"{'PASS' if passed else 'FAIL'}")
    report = {"calls": args.calls, "seconds": times,
              "checks": [{"name": "one estimate (auto batch, planned RTX 4060), median",
                          "value": round(1000 * median, 3), "unit": "ms", "target": f"< {1000 * TARGET_S:.0f}",
                          "passed": passed}]}
    OUT.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
