"""Reference curves: the measured val loss of each shipped preset, step by step.

A preset can ship `<name>.curve.json` beside its TOML (package data of
llmtui.presets), written by `bench/reference_curves.py` from a real run on its
default corpus, with the machine and versions it ran on. The monitor draws it
faintly behind a live run that trains the same recipe, so a user sees at once
whether the run is on track. "The same recipe" is decided by a fingerprint of
every setting that shapes the curve (data, tokenizer, model, batch, steps,
optimizer, schedule, seed); where and how fast it runs (device, threads,
precision fallbacks, logging, evaluation and checkpoint cadence) does not count.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib import resources

from llmtui.engine.config.presets import PACKAGE
from llmtui.engine.config.schema import FIELDS, Config

# the settings that decide the loss curve of a run
_RECIPE_SECTIONS = ("data", "tokenizer", "model", "optimizer", "scheduler")
_RECIPE_TRAINING = ("batch_size", "grad_accum_steps", "target_tokens_per_step", "max_steps",
                    "epochs", "sampling", "grad_clip")
# where the tokens go, and whether the tokenizer is trained again: not what is trained
_NOT_RECIPE = {("data", "prepared_dir"), ("tokenizer", "retrain")}


def recipe_fingerprint(cfg: Config) -> str:
    """What a run's curve depends on, hashed (see the module docstring)."""
    values = cfg.to_dict()
    # a key at its default is left out: a key added to the schema later (at its default)
    # leaves every recipe, and the curves measured on it, as they were
    recipe = {section: {k: v for k, v in values[section].items()
                        if (section, k) not in _NOT_RECIPE and v != FIELDS[section][k].default}
              for section in _RECIPE_SECTIONS}
    recipe["training"] = {k: values["training"][k] for k in _RECIPE_TRAINING}
    recipe["seed"] = values["run"]["seed"]
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ReferenceCurve:
    preset: str
    recipe: str                         # recipe_fingerprint of the run it was measured on
    points: list[tuple[int, float]]     # (step, val loss)
    machine: str                        # where it ran: CPU model, threads
    versions: str                       # python, torch
    measured: str                       # date

    def to_json(self) -> dict:
        return asdict(self)


def reference_curves() -> list[ReferenceCurve]:
    """Every shipped reference curve (malformed files are skipped)."""
    curves = []
    for entry in resources.files(PACKAGE).iterdir():
        if not entry.name.endswith(".curve.json"):
            continue
        try:
            d = json.loads(entry.read_text(encoding="utf-8"))
            curves.append(ReferenceCurve(
                preset=str(d["preset"]), recipe=str(d["recipe"]),
                points=[(int(s), float(v)) for s, v in d["points"]], machine=str(d["machine"]),
                versions=str(d["versions"]), measured=str(d["measured"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return curves


def reference_for(cfg: Config) -> ReferenceCurve | None:
    """The shipped curve measured on this very recipe, if there is one."""
    mine = recipe_fingerprint(cfg)
    return next((c for c in reference_curves() if c.recipe == mine), None)
