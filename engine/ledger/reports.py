"""Moved to the read side: ``engine.read.reports`` (kept for callers not yet moved)."""

from engine.read.reports import (
    ChannelLine,
    NetPosition,
    channel_summary,
    net_positions,
    processing_window,
    reason_summary,
)

__all__ = [
    "ChannelLine", "NetPosition", "channel_summary", "net_positions", "processing_window",
    "reason_summary",
]  # fmt: skip
