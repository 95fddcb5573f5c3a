"""LOG_FORMAT=json: one JSON object per line, for log shippers (Loki, Elasticsearch, ...).

Each line has `time` (RFC 3339, UTC, milliseconds), `level`, `pid`, `logger` and
`message`, then `exception` when there is one (its traceback, newlines escaped: still one
line), then the fields a line was given as `extra` (a revocation's `session_id`, `reason`,
`by`). Twenty lines of the standard library, where a dependency would need configuring to
say as much.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# What every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        return json.dumps(line, ensure_ascii=False, default=str)
