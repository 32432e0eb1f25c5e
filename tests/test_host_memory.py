"""Training on a CPU keeps the memory a step frees for the next step (engine.planning.host_memory):
measured, it took the page faults of a step from hundreds to a handful and 2-5% off its time."""

import json
import subprocess
import sys

import pytest

# a fresh process per case: the allocator setting lasts for the process once made. It
# counts the page faults of 10 training steps of the cpu preset's model after 10 warm-up
# steps, through the Trainer's own setup (which makes the setting), or with it disabled.
STEPS = r"""
import json, resource, sys
from llmtui import load_config
from llmtui.engine.planning import host_memory
from llmtui.engine.training.trainer import Trainer
if sys.argv[1] == "off":
    host_memory.keep_freed_memory = lambda: False
cfg = load_config("cpu", json.loads(sys.argv[2]))
trainer = Trainer(cfg, overwrite=True)
trainer.setup()
for _ in range(10):
    trainer.train_step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    trainer.train_step()
print(json.dumps({"faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10}))
"""


@pytest.mark.subprocess
def test_cpu_training_steps_reuse_freed_memory_instead_of_faulting_it_in(tmp_path, shared_data_dir):
    overrides = [f'run.out_dir="{tmp_path}"', f'data.prepared_dir="{shared_data_dir}"', 'run.device="cpu"',
                 "training.batch_size=8", "run.threads=1"]
    faults = {}
    for case in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", STEPS, case, json.dumps(overrides + [f'run.name="{case}"'])],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        faults[case] = json.loads(out.stdout.strip().splitlines()[-1])["faults_per_step"]
    # glibc's defaults hand the freed top of the heap back and fault it in again each step
    assert faults["off"] > 100, faults
    assert faults["on"] < faults["off"] / 10, faults


@pytest.mark.unit
def test_the_allocator_takes_the_settings_on_linux():
    from llmtui.engine.planning import host_memory
    assert host_memory.keep_freed_memory() is sys.platform.startswith("linux")
