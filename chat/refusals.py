"""
Why a request for an answer is refused before any answer starts.

One vocabulary for every way in: the JSON API answers a refusal with its status and
`{"error": {"code", "message"}}` (and `Retry-After`), the pages show its message in the
composer with the same status.
"""

from chat import failures


class Refused(Exception):
    """The answer cannot be started now; `retry_after` says when to try again, if known."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def busy() -> Refused:
    return Refused(409, "busy", "Wait for the current answer to finish, or stop it.")


def nothing_to_answer() -> Refused:
    return Refused(409, "nothing_to_answer", "This conversation has no message of yours to answer.")


def nothing_to_continue() -> Refused:
    return Refused(
        409,
        "nothing_to_continue",
        "Only an answer with some text that was cut off at the length limit, stopped, or "
        "broken off by an error can be continued.",
    )


def no_such_conversation() -> Refused:
    return Refused(404, "not_found", "No such conversation.")


def no_such_message(role: str | None = None) -> Refused:
    what = {"user": "a message of yours", "assistant": "an answer"}.get(role or "", "a message")
    return Refused(400, "invalid_message", f"That is not {what} in this conversation.")


def event_log_unavailable() -> Refused:
    failure = failures.EVENT_LOG_UNAVAILABLE
    return Refused(503, failure.code, failure.message, retry_after=2)


def overloaded() -> Refused:
    return Refused(503, "busy_server", "The server is busy right now; retry in a moment.", 2)


def model_withdrawn(model: str) -> Refused:
    return Refused(
        409,
        "unknown_model",
        f"This conversation's model, {model}, is no longer offered. Start a new conversation.",
    )
