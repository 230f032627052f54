"""Running one chat request: ``ChatCall`` (its attempts, retries and deltas) and the stream objects.

``ChatCall.texts`` / ``ChatCall.atexts`` are generators of the text deltas: each
attempt goes through a transport; a ``Retry`` waits (the backoff, or what
the server asked) and tries again, while no byte of a response was handed
out. Each delta goes to ``ctx.chunk`` when the call runs inside a worker
call (unless ``chunks=False``), and to ``on_delta``; a reply that was not
streamed is one delta, its whole text. ``Stream`` and ``AsyncStream`` are
what ``llm.stream`` and ``llm.astream`` return.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Coroutine, Generator
from types import TracebackType
from typing import Any, Callable, Optional

from .._context import Context, _log
from ._errors import LLMError
from ._exchange import Exchange, Request, Retry, backoff
from ._reply import Reply
from ._transport import CancelGuard, async_attempt, sync_attempt

OnDelta = Optional[Callable[[str], Any]]
"""Called with each text delta; in ``achat``/``astream`` it may be ``async``."""


class ChatCall:
    """One chat request: its attempts and retries, and where its text deltas go."""

    def __init__(
        self, request: Request, on_delta: OnDelta, ctx: Context | None, chunks: bool = True
    ) -> None:
        self.request = request
        self.on_delta = on_delta
        self.ctx = ctx
        self.forward = chunks and ctx is not None and ctx._attached
        self.reply: Reply | None = None

    def run(self) -> Reply:
        """Make the request (sync) and return the ``Reply``."""
        for _ in self.texts():
            pass
        assert self.reply is not None
        return self.reply

    async def arun(self) -> Reply:
        """Make the request (asyncio) and return the ``Reply``."""
        texts = self.atexts()
        try:
            async for _ in texts:
                pass
        finally:
            await texts.aclose()
        assert self.reply is not None
        return self.reply

    def texts(self) -> Generator[str, None, None]:
        """The text deltas, with retries; sets ``reply`` at the end."""
        request = self.request
        with CancelGuard(self.ctx) as guard:
            attempt = 0
            while True:
                exchange = Exchange(request)
                inner = sync_attempt(request, exchange, guard)
                try:
                    for text in inner:
                        pending = self._deliver(text)
                        if pending is not None:
                            pending.close()
                            raise TypeError(
                                "flw.llm: on_delta returned a coroutine; "
                                "use a plain function, or achat/astream"
                            )
                        yield text
                except Retry as retry:
                    guard.sleep(self._retry_delay(retry, attempt), request)
                    attempt += 1
                    continue
                finally:
                    inner.close()
                self.reply = exchange.reply()
                return

    async def atexts(self) -> AsyncGenerator[str, None]:
        """``texts`` over asyncio."""
        request = self.request
        attempt = 0
        while True:
            exchange = Exchange(request)
            inner = async_attempt(request, exchange)
            try:
                async for text in inner:
                    pending = self._deliver(text)
                    if pending is not None:
                        await pending
                    yield text
            except Retry as retry:
                await asyncio.sleep(self._retry_delay(retry, attempt))
                attempt += 1
                continue
            finally:
                await inner.aclose()
            self.reply = exchange.reply()
            return

    def _deliver(self, text: str) -> Coroutine[Any, Any, Any] | None:
        """Hand a delta to the call's chunks and ``on_delta``; a coroutine it returned."""
        if self.forward:
            assert self.ctx is not None
            self.ctx.chunk(text)
        if self.on_delta is not None:
            result = self.on_delta(text)
            if inspect.iscoroutine(result):
                return result
        return None

    def _retry_delay(self, retry: Retry, attempt: int) -> float:
        """The wait before the next attempt; raises the error when there is none."""
        error = retry.error
        if attempt >= self.request.max_retries:
            if attempt:
                retries = "1 retry" if attempt == 1 else f"{attempt} retries"
                error.args = (f"{error} (after {retries})",)
            raise error from None
        delay = retry.after if retry.after is not None else backoff(attempt)
        text = f"{error}; retry {attempt + 1} of {self.request.max_retries} in {delay:.2f} s"
        ctx = self.ctx
        if ctx is not None and ctx._attached:
            ctx.log(text, "info")
        else:
            _log("info", "%s", text)
        return delay


class Stream:
    """The text deltas of a streamed reply, as they arrive (from ``llm.stream``).

    ``reply`` is the whole ``Reply`` once the iteration ended; ``close()``
    (or leaving a ``with`` block) closes the connection early.
    """

    def __init__(self, call: ChatCall) -> None:
        self._call = call
        self._texts = call.texts()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        return next(self._texts)

    @property
    def reply(self) -> Reply:
        """The ``Reply``; ``LLMError`` before the stream ended."""
        if self._call.reply is None:
            raise LLMError("flw.llm: the stream has not ended yet; iterate it to the end first")
        return self._call.reply

    def close(self) -> None:
        """Stop reading and close the connection."""
        self._texts.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncStream:
    """The text deltas of a streamed reply over asyncio (from ``llm.astream``).

    ``reply`` is the whole ``Reply`` once the iteration ended; ``await
    aclose()`` (or leaving an ``async with`` block) closes the connection
    early, and so does cancelling the task that iterates.
    """

    def __init__(self, call: ChatCall) -> None:
        self._call = call
        self._texts = call.atexts()

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        return await self._texts.__anext__()

    @property
    def reply(self) -> Reply:
        """The ``Reply``; ``LLMError`` before the stream ended."""
        if self._call.reply is None:
            raise LLMError("flw.llm: the stream has not ended yet; iterate it to the end first")
        return self._call.reply

    async def aclose(self) -> None:
        """Stop reading and close the connection."""
        await self._texts.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
