"""What the flw.llm tests share: the long reply a cancel interrupts, the
hang bound, readers of the loopback server's events, and an async cancel
after the first deltas."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flw import llm

LONG = (
    "tok " * 400
)  # with a token_delay of 0.05 the stream takes 20 s: a cancel ends it long before
HANG = 10.0  # the bound that catches a hang; generous, so a loaded machine does not fail the tests


def of_kind(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == kind]


def closed(events: list[dict[str, Any]]) -> bool:
    """Whether the server saw a client close mid-stream."""
    return bool(of_kind(events, "client_closed"))


def cancel_achat_after(deltas: int, **kwargs: Any) -> None:
    """Start ``llm.achat("go", **kwargs)``, cancel it once ``deltas`` text
    deltas came, and check that the cancel propagates."""

    async def main() -> None:
        seen: list[str] = []
        task = asyncio.ensure_future(llm.achat("go", on_delta=seen.append, **kwargs))
        while len(seen) < deltas:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
