"""Typed settings of the language server (docs/protocol.md, "Settings").

They arrive as JSON through `initializationOptions` and `workspace/didChangeConfiguration`.
`parse_settings` never fails: every invalid value is replaced by its default and reported
as a message naming the setting, which the server shows with `window/showMessage`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfim.devices import check_device_spelling
from deepfim.engine.api import Mode

MODES = tuple(m.value for m in Mode)  # the JSON values; the modes themselves: engine.api.Mode


@dataclass(frozen=True)
class Settings:
    """Validated settings; field names are the snake_case form of the JSON keys."""

    enabled: bool = True
    mode: str = "instant"  # mode for automatic triggers
    checkpoint: str | None = None  # None: the embedded model
    device: str = "cpu"  # where the in-process engine runs: "cpu", "cuda", "cuda:N"
    expert_checkpoint: str | None = None  # None: same as `checkpoint`
    server: str | None = None  # "host:port" of a LAN team server; None: in-process engine
    token: str | None = None
    tls_ca: str | None = None
    context_budget: int = 4096  # the prompt besides the repository part (instant; expert uses 4x)
    repository_budget: int | None = None  # the repository part; None: the checkpoint's default
    # automatic suggestions whose mean log-probability per token is below this are not shown;
    # None: the checkpoint's (serving.json), False: show every suggestion
    confidence_gate: float | bool | None = None
    max_tokens: int = 48  # instant mode; expert uses 4x
    debounce_ms: int = 8
    # an automatic suggestion of several lines still being written this many milliseconds after
    # the request is shown with its complete lines; the rest follows when they are accepted
    # (0: always wait for the whole)
    show_by_ms: int = 150
    log_file: str | None = None
    log_level: str | None = None  # "DEBUG" ... "ERROR"; None: `deepfim lsp --log-level` decides


class InvalidSetting(ValueError):
    """A value that does not fit its setting; the message says what was expected."""


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidSetting(f"expected true or false, got {value!r}")
    return value


def _int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidSetting(f"expected an integer in [{low}, {high}], got {value!r}")
        return value

    return check


def _mode(value: Any) -> str:
    if value not in MODES:
        raise InvalidSetting(f"expected one of {', '.join(MODES)}, got {value!r}")
    return value


def _optional_int_range(low: int, high: int) -> Callable[[Any], int | None]:
    check = _int_range(low, high)
    return lambda value: None if value is None else check(value)


GATE_RANGE = (-20.0, 0.0)  # mean log-probability per token


def _optional_gate(value: Any) -> float | bool | None:
    if value is None or value is False:
        return value
    low, high = GATE_RANGE
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidSetting(f"expected a number in [{low:g}, {high:g}], false (no gate) or null, got {value!r}")
    return float(value)


def _optional_string(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidSetting(f"expected a non-empty string or null, got {value!r}")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _optional_log_level(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise InvalidSetting(f"expected one of {', '.join(LOG_LEVELS)} or null, got {value!r}")
    return value.upper()


def _device(value: Any) -> str:
    try:
        return check_device_spelling(value)
    except ValueError as exc:
        raise InvalidSetting(str(exc)) from None


def _optional_dir(value: Any) -> str | None:
    path = _optional_string(value)
    if path is not None and not Path(path).expanduser().is_dir():
        raise InvalidSetting(f"no such directory: {path!r}")
    return path


def _optional_file(value: Any) -> str | None:
    path = _optional_string(value)
    if path is not None and not Path(path).expanduser().is_file():
        raise InvalidSetting(f"no such file: {path!r}")
    return path


def parse_address(value: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 hosts in brackets); raises InvalidSetting naming the value."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidSetting(f"expected host:port, got {value!r}")
    return host, int(port)


def _optional_address(value: Any) -> str | None:
    address = _optional_string(value)
    if address is not None:
        parse_address(address)
    return address


# JSON key -> (field name, validator)
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "enabled": ("enabled", _bool),
    "mode": ("mode", _mode),
    "checkpoint": ("checkpoint", _optional_dir),
    "device": ("device", _device),
    "expertCheckpoint": ("expert_checkpoint", _optional_dir),
    "server": ("server", _optional_address),
    "token": ("token", _optional_string),
    "tlsCa": ("tls_ca", _optional_file),
    "contextBudget": ("context_budget", _int_range(256, 1 << 20)),
    "repositoryBudget": ("repository_budget", _optional_int_range(0, 1 << 20)),
    "confidenceGate": ("confidence_gate", _optional_gate),
    "maxTokens": ("max_tokens", _int_range(1, 2048)),
    "debounceMs": ("debounce_ms", _int_range(0, 2000)),
    "showByMs": ("show_by_ms", _int_range(0, 10000)),
    "logFile": ("log_file", _optional_string),
    "logLevel": ("log_level", _optional_log_level),
}
_DEFAULTS = Settings()


def settings_section(raw: Any) -> Any:
    """The DeepFIM object inside a `didChangeConfiguration` payload (`{deepfim: {...}}` or bare)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("deepfim"), Mapping):
        return raw["deepfim"]
    return raw


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Validate a settings object on top of `base` (defaults when None).

    Returns:
        The settings, with each invalid value replaced by its default, and one message per
        problem, each naming the setting (`deepfim.contextBudget: ...`).
    """
    base = base or _DEFAULTS
    if raw is None:
        return base, []
    if not isinstance(raw, Mapping):
        return base, [f"deepfim: settings must be an object, got {type(raw).__name__}; ignored"]
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        if key not in _FIELDS:
            problems.append(f"deepfim.{key}: unknown setting, ignored")
            continue
        name, check = _FIELDS[key]
        try:
            changes[name] = check(value)
        except InvalidSetting as exc:
            default = getattr(_DEFAULTS, name)
            changes[name] = default
            problems.append(f"deepfim.{key}: {exc}; using the default ({default!r})")
    return dataclasses.replace(base, **changes), problems
