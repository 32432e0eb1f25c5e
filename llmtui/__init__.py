"""llmtui: train small GPT-style language models on your own machine.

The Python API is the engine's:

    import llmtui
    cfg = llmtui.load_config("cpu", overrides=["training.max_steps=100"])
    result = llmtui.train(cfg)
"""

__version__ = "0.1.0"

from engine import CheckpointError, ConfigError, DataError, UserError  # noqa: E402


def __getattr__(name):
    if name in ("load_config", "train", "Trainer", "TrainResult"):
        from engine import api
        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["load_config", "train", "Trainer", "TrainResult",
           "UserError", "ConfigError", "DataError", "CheckpointError"]
