"""Errors a user can fix. Front ends print them as one line and exit 2.

A ConfigError carries its parts as fields (where it came from, the key, the
value, what is allowed), so a form can mark the field and show only what is
wrong with it; `str()` is the one line the command line prints.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input from the user: a config key, a file, a CLI value.

    The message is one line that names the key or file and says what is allowed.
    Front ends print it without a traceback and exit with code 2.
    """

    exit_code = 2

    def __init__(self, message: str):
        message = " ".join(str(message).split())
        super().__init__(message)
        self.detail = message   # what a screen shows where the origin is already clear


class ConfigError(UserError):
    """A config value, key or combination is not allowed.

    Fields (each may be None):
      origin   where the config came from: a file path, "preset cpu", "--override", "form"
      line     the line in that file
      key      the setting, "section.key"
      value    the value as written there (TOML syntax)
      reason   a short word on what is wrong ("out of range", "unknown key", ...)
      allowed  what would be allowed, in words
      related  other keys the rule involves (cross-key rules)
    `detail` is the message without its origin; `str(error)` is the whole line.
    """

    def __init__(self, detail: str, *, origin: str | None = None, line: int | None = None,
                 key: str | None = None, value: str | None = None, reason: str | None = None,
                 allowed: str | None = None, related: tuple[str, ...] = ()):
        detail = " ".join(str(detail).split())
        self.origin, self.line, self.key, self.value = origin, line, key, value
        self.reason, self.allowed, self.related = reason, allowed, tuple(related)
        super().__init__(f"{self.where}: {detail}" if self.where else detail)
        self.detail = detail

    @property
    def where(self) -> str | None:
        if self.origin and self.line:
            return f"{self.origin}:{self.line}"
        return self.origin

    @property
    def keys(self) -> tuple[str, ...]:
        """Every setting the error is about, the main one first."""
        return ((self.key,) if self.key else ()) + tuple(k for k in self.related if k != self.key)

    def short(self) -> str:
        """What a form shows under the field: what is wrong and what is allowed."""
        if self.allowed:
            return f"{self.reason}: expected {self.allowed}" if self.reason else f"expected {self.allowed}"
        return self.detail


def config_error(origin: str | None, key: str, value: Any, allowed: str, reason: str | None = None,
                 line: int | None = None) -> ConfigError:
    """The standard "KEY = VALUE is not allowed (REASON); expected ALLOWED" error."""
    detail = f"{key} = {value} is not allowed"
    if reason:
        detail += f" ({reason})"
    return ConfigError(f"{detail}; expected {allowed}", origin=origin, line=line, key=key,
                       value=str(value), reason=reason, allowed=allowed)


class DataError(UserError):
    """A corpus, token file or tokenizer cannot be used."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt, unsafe or does not match the config."""


class RecordError(UserError):
    """The run's record (metrics.jsonl, train_log.json) cannot be written: a full disk,
    a folder made read-only. Training stops after saving what it can."""


class OutOfMemory(UserError):
    """The device ran out of memory even after the micro-batch was halved: the config
    asks for more than the device has (one line with the settings to lower)."""


class ResumeMismatch(CheckpointError):
    """The checkpoint is intact but was trained with another tokenizer, data or model shape."""


class RunFinished(UserError):
    """A resume of a run that already reached its max_steps: nothing to do, nothing
    written. Not a failure: front ends say so and exit 0."""

    exit_code = 0


class Interrupted(UserError):
    """Stopped (Ctrl-C, SIGTERM, the app's Stop) before training began: nothing to save."""

    exit_code = 130

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code   # 129 when the terminal hung up (SIGHUP)
