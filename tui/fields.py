"""Text <-> value for the wizard's inputs, driven by the config schema.

Pure functions (no Textual), so they are cheap to test. A field's text is what
the user types; `parse_field_text` turns it into a value checked by the
engine's own `coerce`, so the form accepts exactly what a TOML file may hold.
"""

from __future__ import annotations

from typing import Any

from llmtui.engine.config.loading import coerce, parse_override_value
from llmtui.engine.config.resolved import AUTO, is_auto
from llmtui.engine.config.schema import FieldSpec

# string fields whose values usually hold control characters (newlines): shown escaped
ESCAPED_FIELDS = {"eval.sample_prompt"}


def escape_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def unescape_text(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in "nt\\":
                out.append({"n": "\n", "t": "\t", "\\": "\\"}[nxt])
                i += 2
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_text(spec: FieldSpec, value: Any) -> str:
    """The text an input shows for a value."""
    if spec.type is list:
        import tomlkit
        return tomlkit.item(list(value)).as_string()
    if spec.type is bool:
        return "true" if value else "false"
    if spec.type is str:
        return escape_text(value) if spec.path in ESCAPED_FIELDS else str(value)
    if spec.type is float and isinstance(value, float):
        return repr(value)
    return str(value)


def parse_field_text(spec: FieldSpec, text: str) -> Any:
    """The value for what the user typed; ConfigError when it is not allowed."""
    origin = "form"
    if spec.type is str:
        value: Any = unescape_text(text) if spec.path in ESCAPED_FIELDS else text
    elif spec.auto and is_auto(text.strip()):
        value = AUTO
    elif spec.type is list:
        stripped = text.strip()
        if not stripped:
            value = []
        else:
            if not stripped.startswith("["):
                stripped = f"[{stripped}]"
            value = parse_override_value(stripped)
    elif spec.type in (int, float):
        value = _number(text)
    elif spec.type is bool:
        value = {"true": True, "false": False}.get(text.strip().lower(), text)
    else:
        value = text
    return coerce(spec, value, origin)


def _number(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return text
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        return text
