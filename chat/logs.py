"""Logging: the request id on every line, and JSON lines for collectors (CHAT_LOG_FORMAT=json).

The request id is a context variable: the middleware sets it for a request, an answer's
task sets it to the id of the request that started the answer, and the filter adds it
to every record.

A JSON line holds what the call logged and nothing more: the time, level, logger and
message, the fields passed in `extra={...}` (and the request id the filter adds), and the
exception's traceback, if any.
"""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

request_id: ContextVar[str] = ContextVar("request_id", default="-")

# The attributes every record has; any other attribute came from `extra` or a filter.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            # An extra named like one of the keys above does not replace it.
            if name not in RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra JSON cannot hold (a UUID, a datetime, a model) goes as text.
        return json.dumps(entry, default=str, ensure_ascii=False)
