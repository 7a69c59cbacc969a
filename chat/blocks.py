"""
Streamed Markdown, rendered a finished block at a time.

Re-rendering a whole answer on every token costs O(n²) and makes long answers fall
behind the model. Instead the stream for the web page adds, after the delta that
finishes a Markdown block, a `block` event with that block's HTML: the page appends it
once and keeps only the still-open block as plain text.
"""

import contextlib
import re
from collections.abc import AsyncGenerator

from chat.events import DELTA, Event
from chat.render import render_markdown

FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class BlockSplitter:
    """Cut Markdown arriving in pieces into finished blocks and the block still open.

    A block ends at a blank line outside a code fence, once the next line starts at the
    margin: an indented line may continue a list item, so it keeps the block open.
    """

    def __init__(self) -> None:
        self._text = ""  # the open block's Markdown
        self._scanned = 0  # where the first line not yet looked at starts
        self._fence = ""  # the marker of the open code fence, if any
        self._blank_end = -1  # just past a blank line that may end the block

    def feed(self, text: str) -> list[str]:
        """Add text; return the Markdown of each block it finished, in order."""
        self._text += text
        finished = []
        while True:
            if 0 <= self._blank_end < len(self._text) and self._text[self._blank_end] != "\n":
                if not self._text[self._blank_end].isspace():
                    finished.append(self._text[: self._blank_end])
                    self._text = self._text[self._blank_end :]
                    self._scanned -= self._blank_end
                self._blank_end = -1
            line_end = self._text.find("\n", self._scanned)
            if line_end < 0:
                return finished
            self._look_at(self._text[self._scanned : line_end], line_end + 1)
            self._scanned = line_end + 1

    def _look_at(self, line: str, end: int) -> None:
        fence = FENCE.match(line)
        if self._fence:
            if (
                fence
                and fence.group(1)[0] == self._fence[0]
                and len(fence.group(1)) >= len(self._fence)
                and not line[fence.end() :].strip()
            ):
                self._fence = ""
        elif fence:
            self._fence = fence.group(1)
        elif not line.strip() and self._text[: end - len(line) - 1].strip():
            self._blank_end = end


def utf16_length(text: str) -> int:
    """Return the length of text as a browser's string counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


async def with_blocks(
    batches: AsyncGenerator[list[Event]], before: str | None
) -> AsyncGenerator[list[Event]]:
    """Add a rendered `block` event after each delta that finishes a Markdown block.

    `before` is the answer's text up to the first event, which the reader already has;
    None when it cannot be known, and then no block is sent. A block says where it
    starts and ends in the answer (in UTF-16 code units, as the page counts), so the page
    can check that it fits what it holds.
    """
    # aclosing: the events may hold an upstream read or a log wait; end them with the stream.
    async with contextlib.aclosing(batches):
        if before is None:
            async for batch in batches:
                yield batch
            return
        splitter = BlockSplitter()
        offset = sum(utf16_length(block) for block in splitter.feed(before))
        async for batch in batches:
            with_rendered: list[Event] = []
            for event in batch:
                with_rendered.append(event)
                if event.kind != DELTA:
                    continue
                for block in splitter.feed(event.data["content"]):
                    end = offset + utf16_length(block)
                    data = {"html": render_markdown(block), "start": offset, "end": end}
                    with_rendered.append(Event(None, "block", data))
                    offset = end
            yield with_rendered
