"""Timestamps as records hold them (redun's export spelling) and as index keys sort them. Pure."""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(when: datetime) -> str:
    """redun's export spelling: str() of a tz-aware UTC datetime."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return str(when.astimezone(UTC))


def parse_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except (ValueError, TypeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def ts_key(text: str | None) -> str:
    """A fixed-width, sortable key for a timestamp string (microseconds since the epoch)."""
    when = parse_timestamp(text)
    micros = 0 if when is None else max(0, int(when.timestamp() * 1_000_000))
    return f"{micros:017d}"


__all__ = ["format_timestamp", "parse_timestamp", "ts_key"]
