"""The app's own settings between launches (the theme), in the user's config folder.

`$XDG_CONFIG_HOME/llmtui/settings.toml` (by default ~/.config/llmtui/settings.toml).
A missing or unreadable file means defaults; a failed write loses only the
preference, never the user's work.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import tomlkit

from llmtui.engine import fsutil


def settings_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "llmtui" / "settings.toml"


def load_settings() -> dict:
    try:
        return tomllib.loads(settings_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def save_setting(key: str, value) -> bool:
    """Remember one setting; False when it could not be written."""
    settings = load_settings()
    settings[key] = value
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, tomlkit.dumps(settings).encode("utf-8"))
    except OSError:
        return False
    return True
