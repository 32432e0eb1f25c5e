"""Exit codes of the `llmtui` command, and the one-line error every command prints.

    0    done
    1    training diverged (non-finite loss), or a bug
    2    bad input: config, data, checkpoint, command line (one line, no traceback)
    130  interrupted (Ctrl-C / SIGTERM) after the checkpoint was saved
"""

from __future__ import annotations

import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    """Print `llmtui: error: MESSAGE` on stderr; return `code` for the caller to exit with."""
    print(f"llmtui: error: {message}", file=sys.stderr)
    return code
