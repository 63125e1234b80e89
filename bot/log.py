"""Structured logs: one JSON object per line, event name plus fields, never patient data.

Call sites log an event name and a few identifiers (`extra={"file_id": …}`); file names, image
bytes, message text and user-visible verdict text never go into a log record. Libraries that
echo what they parse (Pillow prints EXIF and PNG text at DEBUG, pydicom its tags, the Slack and
AWS SDKs whole request bodies) are held to warnings and above, whatever their own levels say.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

# Each record's own keys: an `extra` field of the same name is renamed, never written over them.
RECORD_KEYS = ("ts", "level", "logger", "event", "exc")

# Loggers that may print image metadata, message text or request bodies below WARNING.
QUIET_LIBRARIES = (
    "PIL",
    "pydicom",
    "pillow_heif",
    "botocore",
    "boto3",
    "urllib3",
    "aiohttp",
    "slack_sdk",
    "slack_bolt",
    "asyncio",
    "onnxruntime",
)


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The `extra` fields of a record, renamed (`ts` -> `extra_ts`) where they clash."""
    fields: dict[str, object] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD:
            continue
        fields[f"extra_{key}" if key in RECORD_KEYS else key] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = (
            f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {fields}".rstrip()
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def is_quiet_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in QUIET_LIBRARIES)


class QuietLibraries(logging.Filter):
    """Drops library records under WARNING at the handler, even if a library (or a debugging
    session) turned its own logger up to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not is_quiet_library(record.name)


def configure(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(QuietLibraries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
