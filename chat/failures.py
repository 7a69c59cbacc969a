"""
How an answer can fail: one vocabulary of codes and readable messages.

Every way an answer ends badly maps to one of these, whoever notices it: the pipeline
(the model, the deadline, our own bugs), the conversation's producer (its event log), a
reader or the sweeper (a producer that vanished). The model's own failures keep the
codes the provider gives them (`upstream_*`).
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failure:
    code: str
    message: str


TIMEOUT = Failure("timeout", "The answer took too long and was stopped.")
INTERNAL = Failure("internal", "Something went wrong on our side.")
EVENT_LOG = Failure("event_log", "The live stream broke off; the answer so far was kept.")
EVENT_LOG_UNAVAILABLE = Failure("event_log_unavailable", "Answers cannot stream right now; retry.")
INTERRUPTED = Failure("interrupted", "The server stopped while writing this answer. Please retry.")
DELETED = Failure("not_found", "This conversation was deleted.")
TOO_MANY_TOOL_STEPS = Failure(
    "too_many_tool_steps", "The model kept asking for tools, so the answer was stopped."
)
