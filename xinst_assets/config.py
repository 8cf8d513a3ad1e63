"""The configuration a deployment chooses, read once when the definitions are built.

Every value has a default that runs the embedded sample; each can be set by an environment variable (handy
for `dagster dev`, schedules and containers) and each resource can also be changed per run in the launchpad.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from xinst_assets.errors import ConfigError
from xinst_assets.languages import LanguageRegistry, load_registry
from xinst_assets.settings import SAMPLE_DIR, Paths, default_home


@dataclass(frozen=True)
class XinstConfig:
    """Deployment settings: languages, data home, raw sources."""

    registry: LanguageRegistry
    home: Path
    raw_patterns: list[str] = field(default_factory=list)
    warehouse_path: Path | None = None
    nightly_cron: str = "0 2 * * *"  # 02:00, after most crawl drops have landed
    timezone: str = "UTC"

    @property
    def paths(self) -> Paths:
        return Paths(self.home)

    @property
    def warehouse(self) -> Path:
        return self.warehouse_path or self.paths.warehouse

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "XinstConfig":
        """Read ``XINST_HOME``, ``XINST_LANGUAGES_FILE``, ``XINST_RAW_SOURCES``, ``XINST_WAREHOUSE``,
        ``XINST_NIGHTLY_CRON`` and ``XINST_TIMEZONE``.

        ``XINST_RAW_SOURCES`` holds one or more patterns separated by ``os.pathsep`` (``:`` on Linux).
        """
        env = os.environ if environ is None else environ
        home = Path(env["XINST_HOME"]).expanduser() if env.get("XINST_HOME") else default_home()
        raw = env.get("XINST_RAW_SOURCES")
        patterns = [p for p in raw.split(os.pathsep) if p] if raw else [str(SAMPLE_DIR / "raw")]
        warehouse = Path(env["XINST_WAREHOUSE"]).expanduser() if env.get("XINST_WAREHOUSE") else None
        return cls(
            registry=load_registry(env.get("XINST_LANGUAGES_FILE")),
            home=home,
            raw_patterns=patterns,
            warehouse_path=warehouse,
            nightly_cron=_cron(env.get("XINST_NIGHTLY_CRON", cls.nightly_cron)),
            timezone=_timezone(env.get("XINST_TIMEZONE", cls.timezone)),
        )


def _cron(value: str) -> str:
    from dagster._utils.schedules import is_valid_cron_string

    if not is_valid_cron_string(value):
        raise ConfigError(f"XINST_NIGHTLY_CRON {value!r} is not a cron expression of 5 fields; set it like "
                          "'0 2 * * *' (02:00 every day)")
    return value


def _timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"XINST_TIMEZONE {value!r} is not an IANA time zone; set it like 'UTC' or "
                          "'Africa/Nairobi'") from None
    return value
