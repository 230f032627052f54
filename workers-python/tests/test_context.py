"""Context: messages it emits in a worker, and a detached Context that never fails."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from flw import Context, Sent


def attached(call_id: int = 7) -> tuple[Context, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []
    ctx = Context(call_id, "t")
    ctx._attach(sent.append)
    return ctx, sent


def test_messages_in_protocol_shape() -> None:
    ctx, sent = attached()
    ctx.progress(1, 10, "step 1")
    ctx.progress(0.25)
    ctx.log("slow upstream", "warning")
    ctx.debug("d")
    ctx.info("i")
    ctx.warning("w")
    ctx.error(ValueError("e"))
    ctx.chunk({"delta": "x"})
    assert sent == [
        {"type": "progress", "id": 7, "progress": 1, "total": 10, "message": "step 1"},
        {"type": "progress", "id": 7, "progress": 0.25},
        {"type": "log", "level": "warning", "message": "slow upstream", "id": 7},
        {"type": "log", "level": "debug", "message": "d", "id": 7},
        {"type": "log", "level": "info", "message": "i", "id": 7},
        {"type": "log", "level": "warning", "message": "w", "id": 7},
        {"type": "log", "level": "error", "message": "e", "id": 7},
        {"type": "chunk", "id": 7, "data": {"delta": "x"}},
    ]
    assert ctx.call_id == 7
    assert ctx.tool == "t"


def test_a_log_line_over_the_limit_says_how_much_was_cut() -> None:
    from flw._context import _MAX_LOG_CHARS

    ctx, sent = attached()
    ctx.log("x" * (_MAX_LOG_CHARS + 1))
    ctx.log("x" * (_MAX_LOG_CHARS + 2))
    assert sent[0]["message"].endswith("x... [1 character cut]")
    assert sent[1]["message"].endswith("x... [2 characters cut]")


def test_chunk_converts_dataclasses() -> None:
    @dataclass
    class Piece:
        text: str

    ctx, sent = attached()
    ctx.chunk(Piece("a"))
    assert sent[-1]["data"] == {"text": "a"}


def test_returns_are_awaitable_no_ops() -> None:
    ctx, sent = attached()

    async def tool() -> list[Any]:
        return [await ctx.progress(1), await ctx.info("x"), await ctx.chunk("c")]

    assert asyncio.run(tool()) == [None, None, None]
    assert isinstance(ctx.progress(2), Sent)
    assert len(sent) == 4


def test_bad_values_raise_clear_errors() -> None:
    ctx, _ = attached()
    with pytest.raises(ValueError, match="log level"):
        ctx.log("x", "loud")
    with pytest.raises(TypeError, match="progress must be a number"):
        ctx.progress("half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        ctx.progress(float("nan"))
    with pytest.raises(TypeError, match="JSON"):
        ctx.chunk(b"bytes")


def test_cancelled_flag() -> None:
    ctx, _ = attached()
    assert ctx.cancelled is False
    ctx._cancel()
    assert ctx.cancelled is True


def test_detached_context_logs_and_never_fails(caplog: pytest.LogCaptureFixture) -> None:
    ctx = Context()
    caplog.set_level(logging.DEBUG, logger="flw")
    ctx.progress(1, 2, "half")
    ctx.warning("careful")
    ctx.chunk("tok")
    assert ctx.call_id is None
    assert ctx.tool is None
    assert ctx.cancelled is False
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", "careful") in levels
    assert any("progress 1/2 half" in message for _, message in levels)
    assert any("tok" in message for _, message in levels)
