"""The YAML configuration file, loaded once into `Settings`.

Relative paths are relative to the configuration file; `~` is the user's home; `null` is the
key's default. A missing file, unknown key, wrong type or impossible value raises
`ConfigError` naming the file, the key and the reason.

Which file: `--config FILE`, else `$DICOM_NODE_CONFIG`, else none (every key at its default:
data in $XDG_DATA_HOME/dicom-node, the shipped model), from whatever directory.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path

import yaml

from dicom_node.config import Settings
from dicom_node.errors import ConfigError

CONFIG_VARIABLE = "DICOM_NODE_CONFIG"


def config_path(explicit: str | Path | None) -> Path | None:
    """The configuration file to read: the one named, else $DICOM_NODE_CONFIG, else none."""
    chosen = explicit or os.environ.get(CONFIG_VARIABLE)
    return Path(chosen) if chosen else None


def load_settings(path: str | Path | None) -> Settings:
    """The settings in `path`; every default when `path` is None."""
    if path is None:
        return Settings()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    base = path.resolve().parent
    settings = _build(Settings, data, "", base, path)
    return dataclasses.replace(settings, source=path.resolve())


def _build(cls: type, data: object, key: str, base: Path, file: Path):
    where = key or "(top level)"
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{file}: {key + '.' if key else ''}{unknown[0]}: unknown key "
            f"(known: {', '.join(fields)})"
        )
    values = {
        name: _convert(hints[name], value, f"{key}.{name}" if key else name, base, file)
        for name, value in data.items()
        if value is not None or _optional(hints[name])  # null: the default
    }
    try:
        obj = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{file}: {where}: {exc}") from exc
    check = getattr(obj, "check", None)
    if check is not None and (problem := check()):
        raise ConfigError(f"{file}: {where}: {problem}")
    return obj


def _optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _convert(hint, value, key: str, base: Path, file: Path):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(hint, value, key, base, file)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, base, file)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {key}: expected a list, got {type(value).__name__}")
        return tuple(_convert(args[0], v, f"{key}[{i}]", base, file) for i, v in enumerate(value))
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{file}: {key}: expected a path, got {value!r}")
        return (base / Path(value).expanduser()).resolve()
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{file}: {key}: expected {hint.__name__}, got {value!r}")
    return value
