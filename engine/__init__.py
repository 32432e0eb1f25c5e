"""llmtui's engine: everything that trains, with no UI imports.

The public entry points are re-exported lazily so that `import engine` stays
cheap (torch is only imported when training actually needs it).
"""

from engine.errors import CheckpointError, ConfigError, DataError, UserError

__all__ = ["UserError", "ConfigError", "DataError", "CheckpointError",
           "load_config", "train", "TrainResult"]


def __getattr__(name):
    if name in ("load_config", "train", "TrainResult"):
        from engine import api
        return getattr(api, name)
    raise AttributeError(name)
