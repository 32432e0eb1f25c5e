"""The shipped presets, read as package data of `llmtui.presets` with importlib.resources.

A preset is named by its file stem (`cpu`, `rtx4060`, ...). A name is looked up
only among the shipped files: anything with a path separator or a suffix is a
file path, never a preset, so a name cannot reach outside the presets folder.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

PACKAGE = "llmtui.presets"


def _folder() -> Traversable:
    return resources.files(PACKAGE)


def preset_names() -> list[str]:
    return sorted(p.name[:-len(".toml")] for p in _folder().iterdir() if p.name.endswith(".toml"))


def is_preset(name: str) -> bool:
    return name in preset_names()


def preset_text(name: str) -> str:
    """The TOML text of a shipped preset (KeyError if there is none of that name)."""
    if not is_preset(name):
        raise KeyError(name)
    return _folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")
