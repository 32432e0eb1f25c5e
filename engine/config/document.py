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
from llmtui.engine.config import foreign
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
        """The value of `section.key` in the document (under another trainer's name too: 002's
        `num_layers` for model.n_layer), else the schema default."""
        spec = field_spec(key)
        table = self.doc.get(spec.section)
        if table is not None and spec.name in table:
            return _plain(table[spec.name])
        if self._foreign_keys():
            try:
                cfg = config_from_dict(self.values(), self.origin)
                return _plain(getattr(getattr(cfg, spec.section), spec.name))
            except ConfigError:
                pass   # a bad value under that name: the form shows the default, to_config says why
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
        self._take_over_foreign_keys(key)
        self._put(key, value)
        return value

    def _put(self, key: str, value: Any) -> None:
        spec = field_spec(key)
        if spec.section not in self.doc:
            self.doc.add(spec.section, tomlkit.table())
        table = self.doc[spec.section]
        if spec.name in table:
            if _plain(table[spec.name]) == value:
                return
            table[spec.name] = value  # tomlkit keeps the line's comment and position
        else:
            item = tomlkit.item(value)
            item.comment(spec.help)
            table.add(spec.name, item)
        self.dirty = True

    def unset(self, key: str) -> None:
        """Take `section.key` out of the document: it reads as the schema default again."""
        spec = field_spec(key)
        self._take_over_foreign_keys(key)
        table = self.doc.get(spec.section)
        if table is not None and spec.name in table:
            del table[spec.name]
            self.dirty = True

    # -- another trainer's key names (engine.config.foreign) ----------------------

    def _foreign_keys(self) -> list[tuple[str, Any]]:
        """(path, value) of each key the document holds under 002's names."""
        out: list[tuple[str, Any]] = []
        for section, table in self.values().items():
            if not isinstance(table, dict):
                continue
            if section in foreign.FOREIGN_SECTIONS:
                out += [(p, v) for p, v in foreign.leaves(section, table) if foreign.is_foreign(p)]
            else:
                out += [(f"{section}.{k}", v) for k, v in table.items()
                        if k not in FIELDS.get(section, {}) and foreign.is_foreign(f"{section}.{k}")]
        return out

    def _take_over_foreign_keys(self, key: str) -> None:
        """Before `key` is set or unset under llmtui's name, 002's keys that set it leave the
        document (else the file would say it twice), and what else they set is written under
        llmtui's names, so that nothing else changes (train_shards' other shards, say)."""
        held = [(path, value) for path, value in self._foreign_keys()
                if key in {target.partition("[")[0] for target, _ in foreign.translate(path, value)}]
        if not held:
            return
        cfg = config_from_dict(self.values(), self.origin)
        for path, value in held:
            for target, _ in foreign.translate(path, value):
                other = field_spec(target.partition("[")[0])
                table = self.doc.get(other.section)
                if other.path != key and (table is None or other.name not in table):
                    self._put(other.path, _plain(getattr(getattr(cfg, other.section), other.name)))
            *tables, name = path.split(".")
            container: Any = self.doc
            for part in tables:
                container = container[part]
            del container[name]
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
