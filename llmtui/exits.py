"""Exit codes of the `llmtui` command, and the one-line error every command prints.

    0    done
    1    training diverged (non-finite loss), or a bug
    2    bad input: config, data, checkpoint, command line (one line, no traceback)
    129  hung up (SIGHUP: the terminal or SSH session closed) after the checkpoint was saved
    130  interrupted (Ctrl-C / SIGTERM) after the checkpoint was saved
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_HANGUP, EXIT_INTERRUPTED = 0, 1, 2, 129, 130


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print `llmtui: error: MESSAGE` on stderr; return `code` for the caller to exit with."""
    say(f"llmtui: error: {message}", sys.stderr)
    return code


def say(line: str, stream=None) -> None:
    """Print a line; a closed pipe or a hung-up terminal silences it instead of raising."""
    stream = stream or sys.stdout
    try:
        print(line, file=stream, flush=True)
    except OSError:
        silence(stream)


def silence(stream) -> None:
    """Point a stream that can no longer be written (a closed pipe, a terminal that hung up)
    at /dev/null, so that later writes and Python's flush at exit do not fail."""
    import os
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


class SafeStream:
    """A text stream for progress output that never raises: the first write that fails
    (EPIPE from `| head`, EIO after SIGHUP) silences it for good and calls `on_broken`
    once. Training must never stop because its output cannot be shown."""

    def __init__(self, stream, on_broken=None):
        self._stream = stream
        self.on_broken = on_broken
        self.broken = False

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._break(exc)
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._break(exc)

    def _break(self, exc: OSError) -> None:
        self.broken = True
        silence(self._stream)
        if self.on_broken is not None:
            self.on_broken(exc)

    def __getattr__(self, name):          # isatty, fileno, encoding... as the stream has them
        return getattr(self._stream, name)
