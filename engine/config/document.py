"""Edit a config TOML file in place, keeping its comments and key order.

The app's wizard edits settings one at a time; each value is checked with
`engine.config.loading.coerce` before it enters the document, the whole config is
validated on demand, and saving writes the document back atomically with
every comment, blank line and key order the file had.

    doc = ConfigDocument.load("my.toml")          # or ConfigDocument.from_preset("cpu")
    doc.set("model.n_layer", 6)                   # ConfigError if not allowed
    cfg = doc.to_config()                         # ConfigError if a cross-key rule fails
    doc.save()                                    # or doc.save("other.toml")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from llmtui.engine import fsutil
from llmtui.engine.config.loading import Origin, coerce, config_from_dict, config_source, read_text, validate
from llmtui.engine.config.schema import FIELDS, Config, field_spec
from llmtui.engine.errors import ConfigError


class ConfigDocument:
    """A TOML config document, edited key by key through the schema."""

    def __init__(self, doc: tomlkit.TOMLDocument, path: Path | None = None, origin: str = "config"):
        self.doc = doc
        self.path = path
        self.origin = origin
        self.dirty = False
        self.preset: str | None = None     # the shipped preset it was opened from

    # -- construction ------------------------------------------------------

    @classmethod
    def from_text(cls, text: str, path: Path | None = None, origin: str | None = None) -> ConfigDocument:
        origin = origin or (str(path) if path else "config")
        try:
            doc = tomlkit.parse(text)
        except TOMLKitError as exc:
            raise ConfigError(f"not valid TOML: {exc}", origin=origin) from None
        made = cls(doc, path, origin)
        made.to_config()  # report unknown keys and bad values now, not at save time
        return made

    @classmethod
    def load(cls, path: str | Path) -> ConfigDocument:
        path = Path(path)
        return cls.from_text(read_text(path), path)

    @classmethod
    def from_preset(cls, name: str) -> ConfigDocument:
        """A shipped preset as an unsaved document (saving needs a path)."""
        text, origin, path = config_source(name)
        doc = cls.from_text(text, path, origin)
        doc.preset = name if path is None else None
        return doc

    # -- values ------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value of `section.key` in the document, else the schema default."""
        spec = field_spec(key)
        table = self.doc.get(spec.section)
        if table is not None and spec.name in table:
            return _plain(table[spec.name])
        return _plain(spec.default)

    def set(self, key: str, value: Any) -> Any:
        """Check `value` for `section.key` and put it in the document.

        Returns the coerced value; raises ConfigError (nothing changes) when
        it is not allowed."""
        section, _, name = key.partition(".")
        if section not in FIELDS or name not in FIELDS[section]:
            raise ConfigError(f"unknown key {key}", origin=self.origin, key=key, reason="unknown key")
        spec = FIELDS[section][name]
        value = coerce(spec, value, self.origin)
        if section not in self.doc:
            self.doc.add(section, tomlkit.table())
        table = self.doc[section]
        if name in table:
            if _plain(table[name]) == value:
                return value
            table[name] = value  # tomlkit keeps the line's comment and position
        else:
            item = tomlkit.item(value)
            item.comment(spec.help)
            table.add(name, item)
        self.dirty = True
        return value

    def unset(self, key: str) -> None:
        """Take `section.key` out of the document: it reads as the schema default again."""
        spec = field_spec(key)
        table = self.doc.get(spec.section)
        if table is not None and spec.name in table:
            del table[spec.name]
            self.dirty = True

    # -- the comment block at the top -------------------------------------------

    def header(self) -> list[str]:
        """The comment lines before the first setting (without the leading '# ')."""
        lines = []
        for key, item in self.doc.body:
            if key is not None:
                break
            if isinstance(item, tomlkit.items.Comment):
                lines.append(item.as_string().strip().removeprefix("#").strip())
        return lines

    def set_header(self, lines: list[str]) -> None:
        """Replace the comment block before the first setting (the rest is kept as it is)."""
        text = self.dumps().splitlines(keepends=True)
        start = 0
        while start < len(text) and (not text[start].strip() or text[start].lstrip().startswith("#")):
            start += 1
        header = "".join(f"# {line}\n" if line else "#\n" for line in lines)
        self.doc = tomlkit.parse(header + "\n" + "".join(text[start:]))
        self.dirty = True

    def values(self) -> dict[str, dict[str, Any]]:
        return self.doc.unwrap()

    def to_config(self) -> Config:
        """The document as a validated Config (ConfigError names the key)."""
        cfg = config_from_dict(self.values(), Origin(self.origin, self.dumps()))
        validate(cfg, self.origin)
        return cfg

    def dumps(self) -> str:
        return tomlkit.dumps(self.doc)

    # -- saving ------------------------------------------------------------

    def save(self, path: str | Path | None = None) -> Path:
        """Validate, then write atomically (temp file, fsync, rename)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError(f"{self.origin}: choose a file name to save to")
        self.to_config()
        text = self.dumps()
        atomic_write(target, text)
        self.path = target
        self.origin = str(target)
        self.dirty = False
        return target


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a file name ending in .toml")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _plain(value: Any) -> Any:
    """A tomlkit item as the plain Python value."""
    if hasattr(value, "unwrap"):
        return value.unwrap()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
