"""The built-in corpus: text that every Python install carries, so a first run
needs no download and no file of the user's.

CPython ships the reference documentation that `help()` shows as
`pydoc_data.topics.topics` (about 465 KB of English prose and code). Some
distributions strip that package; then we fall back to the docstrings of a
fixed list of standard-library modules, which is smaller but still offline.
"""

from __future__ import annotations

import functools
import importlib
import inspect

from llmtui.engine.errors import DataError

# Modules whose docstrings make up the fallback corpus. A fixed list (not
# "everything importable") keeps the text the same from run to run.
_FALLBACK_MODULES = (
    "abc", "argparse", "asyncio", "bisect", "calendar", "collections", "contextlib", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email", "enum", "fractions", "functools",
    "heapq", "html", "http.client", "inspect", "io", "itertools", "json", "logging", "math",
    "os", "pathlib", "pickle", "pprint", "random", "re", "shutil", "socket", "statistics",
    "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "typing",
    "unittest", "urllib.parse", "uuid", "zipfile",
)


@functools.cache
def builtin_text() -> str:
    """The default corpus (see module docstring); the same string on every call."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        text = _docstring_corpus()
    else:
        text = "\n\n".join(topics[key] for key in sorted(topics))
    if not text.strip():
        # Only possible with the fallback under `python -OO`, which drops docstrings.
        raise DataError('data.source = "builtin": this Python has no bundled documentation '
                        "(pydoc_data missing and docstrings stripped); give a text file instead")
    return text


def _docstring_corpus() -> str:
    parts = []
    for name in _FALLBACK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a module may be absent on minimal builds
            continue
        if module.__doc__:
            parts.append(inspect.cleandoc(module.__doc__))
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            if attr.startswith("_"):
                continue
            obj = getattr(module, attr, None)
            # Only objects defined in this module: re-exports would repeat text.
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == name:
                doc = inspect.getdoc(obj)
                if doc:
                    parts.append(f"{name}.{attr}\n{doc}")
    return "\n\n".join(parts)
