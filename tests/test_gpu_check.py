"""bench/gpu_check.py, the check run whenever a GPU is lent: its --dry-run takes the same
code path on the CPU (tiny shapes), so the script cannot rot between GPU sessions."""

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.subprocess


def test_dry_run_trains_every_path_and_prints_the_checks(shared_data_dir, tmp_path):
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--data-dir", str(shared_data_dir),
                           "--json", str(tmp_path / "report.json")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    # detection compares NVML with torch.cuda (here: neither sees a GPU, and they agree)
    assert "NVML:" in out and "torch.cuda: 0 device(s)" in out
    table = out[out.index("run "):]
    # bf16 and fp16 asked, each shown as what the CPU really ran (fp32 without native
    # 16-bit matrix instructions; as asked on a CPU with AMX); Muon eager with the resume
    # check, AdamW through torch.compile
    from llmtui.engine.planning.cpu import cpu_has_native

    def shown(asked):
        return asked if cpu_has_native(asked) else f"fp32 ({asked} asked)"

    cells = {c[0]: c[1:] for c in (re.split(r"\s{2,}", line.strip()) for line in table.splitlines())}
    assert cells["rtx4060 bf16 muon"][0] == shown("bf16") and cells["rtx4060 bf16 muon"][3] == "exact"
    assert cells["rtx4060 fp16 adamw compile"][0] == shown("fp16")
    assert "checks: 6 of 6 passed" in out
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {r["case"]: r for r in report["rows"]}
    assert rows["rtx4060 bf16 muon"]["resume"]["exact"]
    assert all(r["finite"] and r["decreases"] and r["memory_ok"] is None for r in rows.values())
