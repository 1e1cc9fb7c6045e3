"""Offline side of botify: event logs in, sessions, A/B verdicts, reports.

The embedded engine is pandas/pyarrow/numpy on one machine; `stats` holds the
engine-independent statistics so a distributed engine can reuse them unchanged.
"""

from __future__ import annotations

__all__ = ["logs", "sessions", "stats"]
