"""``Client``: chat requests to an OpenAI-compatible endpoint, and the tool-call loop.

Each method resolves its configuration when it is called (argument, then
the client's, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``OPENAI_MODEL``), builds the request, and runs it as a ``ChatCall``
(``_llm_call``). ``run_tools`` is the tool-call loop over those requests.
"""

from __future__ import annotations

import json as _json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Union

from ._context import current_context
from ._llm_call import AsyncStream, ChatCall, OnDelta, Stream
from ._llm_errors import ConfigError, LLMError
from ._llm_exchange import Request
from ._llm_http import endpoint, request_bytes
from ._llm_reply import Reply
from ._llm_tools import ToolLike, ToolSet
from ._version import __version__

Messages = Union[str, Sequence[Mapping[str, Any]]]
"""One user message, or a list of OpenAI message dicts."""


OPENAI_URL = "https://api.openai.com/v1"

_NO_ENDPOINT = (
    "flw.llm: no model endpoint: set OPENAI_BASE_URL (for example "
    "http://localhost:11434/v1 for Ollama) or OPENAI_API_KEY (for api.openai.com), "
    "or pass base_url="
)
_NO_MODEL = (
    "flw.llm: no model: set OPENAI_MODEL (for example OPENAI_MODEL=gpt-4o-mini, or the "
    "name of a local model) or pass model= (to the call or to llm.Client)"
)


class Client:
    """An endpoint, key, model and limits for chat requests.

    Each argument left ``None`` is read from the environment when a request
    is made: ``OPENAI_BASE_URL`` (else ``https://api.openai.com/v1`` when
    there is a key), ``OPENAI_API_KEY`` (none: no ``Authorization`` header,
    as local servers want), ``OPENAI_MODEL``. ``timeout`` is in seconds, for
    connecting and for each read; ``max_retries`` counts the further
    attempts after a retryable failure.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.model = model
        self.timeout = _timeout(timeout)
        self.max_retries = _retries(max_retries)

    def __repr__(self) -> str:
        key = "set" if self.api_key else "from env"
        return (
            f"<flw.llm.Client base_url={self.base_url or 'from env'!r} api_key={key} "
            f"model={self.model or 'from env'!r}>"
        )

    # -- requests ---------------------------------------------------------------

    def chat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: Any = None,
        json: bool = False,
        stream: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> Reply:
        """Send a chat request and return the model's ``Reply``.

        ``messages`` is a string (one user message) or a list of OpenAI
        message dicts (never changed); ``system`` prepends a system message.
        ``temperature``, ``max_tokens`` and ``tool_choice`` go into the body
        when given, ``json=True`` asks for a JSON object
        (``response_format``), ``extra`` is merged into the body last.
        ``tools`` are ``@flw.tool`` functions, plain functions (schema from
        their type hints) or OpenAI tool dicts. With ``stream=True`` each text
        delta goes to ``on_delta`` and, inside a worker call, to
        ``ctx.chunk()`` as it arrives. ``timeout``, ``max_retries``,
        ``base_url``, ``api_key`` and ``model`` override the client's.
        """
        call = self._call(
            _conversation(messages, system),
            ToolSet(tools),
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            tool_choice=tool_choice,
            json_mode=json,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            base_url=base_url,
            api_key=api_key,
            extra=extra,
            on_delta=on_delta,
        )
        return call.run()

    async def achat(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: Any = None,
        json: bool = False,
        stream: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> Reply:
        """``chat`` over asyncio; cancelling the task closes the connection at once."""
        call = self._call(
            _conversation(messages, system),
            ToolSet(tools),
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            tool_choice=tool_choice,
            json_mode=json,
            stream=stream,
            timeout=timeout,
            max_retries=max_retries,
            base_url=base_url,
            api_key=api_key,
            extra=extra,
            on_delta=on_delta,
        )
        return await call.arun()

    def stream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: Any = None,
        json: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> Stream:
        """A streamed ``chat``: iterate the returned ``Stream`` for the text deltas.

        The request is made on the first ``next()``; ``stream.reply`` is the
        ``Reply`` once the iteration ended. Leaving early: ``stream.close()``
        (or ``with llm.stream(...) as s:``) closes the connection.
        """
        call = self._call(
            _conversation(messages, system),
            ToolSet(tools),
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            tool_choice=tool_choice,
            json_mode=json,
            stream=True,
            timeout=timeout,
            max_retries=max_retries,
            base_url=base_url,
            api_key=api_key,
            extra=extra,
            on_delta=on_delta,
        )
        return Stream(call)

    def astream(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[ToolLike] | None = None,
        tool_choice: Any = None,
        json: bool = False,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> AsyncStream:
        """``stream`` over asyncio: ``async for text in llm.astream(...)``.

        Leaving early: ``await s.aclose()`` (or ``async with llm.astream(...) as s:``).
        """
        call = self._call(
            _conversation(messages, system),
            ToolSet(tools),
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            tool_choice=tool_choice,
            json_mode=json,
            stream=True,
            timeout=timeout,
            max_retries=max_retries,
            base_url=base_url,
            api_key=api_key,
            extra=extra,
            on_delta=on_delta,
        )
        return AsyncStream(call)

    def run_tools(
        self,
        messages: Messages,
        *,
        tools: Sequence[ToolLike],
        max_turns: int = 8,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: Any = None,
        json: bool = False,
        stream: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> Reply:
        """Chat with ``tools`` until the model answers without calling one.

        Each tool the model calls runs with its arguments as keyword
        arguments (an async tool with ``asyncio.run``); its result goes back
        as a ``tool`` message (strings as they are, other values as JSON;
        an exception as ``"error: Type: message"``). Returns the last
        ``Reply``, whose ``messages`` is the whole conversation. More than
        ``max_turns`` model calls raise ``LLMError``.
        """
        toolset = ToolSet(tools)
        convo = _conversation(messages, system)
        turns = _turns(max_turns)
        for turn in range(turns):
            reply = self._call(
                convo,
                toolset,
                model=model,
                temperature=temperature,
                max_tokens=max_tokens,
                tool_choice=tool_choice,
                json_mode=json,
                stream=stream,
                timeout=timeout,
                max_retries=max_retries,
                base_url=base_url,
                api_key=api_key,
                extra=extra,
                on_delta=on_delta,
            ).run()
            if not reply.tool_calls:
                return reply
            if turn + 1 == turns:
                raise _too_many_turns(turns, reply)
            convo = list(reply.messages)
            for tool_call in reply.tool_calls:
                content = toolset.call(tool_call)
                convo.append({"role": "tool", "tool_call_id": tool_call.id, "content": content})
        raise AssertionError("unreachable")

    async def arun_tools(
        self,
        messages: Messages,
        *,
        tools: Sequence[ToolLike],
        max_turns: int = 8,
        model: str | None = None,
        system: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tool_choice: Any = None,
        json: bool = False,
        stream: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        extra: Mapping[str, Any] | None = None,
        on_delta: OnDelta = None,
    ) -> Reply:
        """``run_tools`` over asyncio: async tools are awaited, sync ones run in a thread."""
        toolset = ToolSet(tools)
        convo = _conversation(messages, system)
        turns = _turns(max_turns)
        for turn in range(turns):
            reply = await self._call(
                convo,
                toolset,
                model=model,
                temperature=temperature,
                max_tokens=max_tokens,
                tool_choice=tool_choice,
                json_mode=json,
                stream=stream,
                timeout=timeout,
                max_retries=max_retries,
                base_url=base_url,
                api_key=api_key,
                extra=extra,
                on_delta=on_delta,
            ).arun()
            if not reply.tool_calls:
                return reply
            if turn + 1 == turns:
                raise _too_many_turns(turns, reply)
            convo = list(reply.messages)
            for tool_call in reply.tool_calls:
                content = await toolset.acall(tool_call)
                convo.append({"role": "tool", "tool_call_id": tool_call.id, "content": content})
        raise AssertionError("unreachable")

    # -- building a request -----------------------------------------------------

    def _call(
        self,
        convo: list[dict[str, Any]],
        toolset: ToolSet,
        *,
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        tool_choice: Any,
        json_mode: bool,
        stream: bool,
        timeout: float | None,
        max_retries: int | None,
        base_url: str | None,
        api_key: str | None,
        extra: Mapping[str, Any] | None,
        on_delta: OnDelta,
    ) -> ChatCall:
        environ = os.environ
        key = _first(api_key, self.api_key, environ.get("OPENAI_API_KEY"))
        url, source = self._base_url(base_url, key)
        try:
            where = endpoint(url, "chat/completions")
        except ValueError as exc:
            raise ConfigError(
                f"flw.llm: the base URL {url!r} from {source} is invalid: {exc}"
            ) from None
        name = _first(model, self.model, environ.get("OPENAI_MODEL"))
        if name is None:
            raise ConfigError(_NO_MODEL)
        body: dict[str, Any] = {"model": name, "messages": convo, "stream": bool(stream)}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if toolset:
            body["tools"] = toolset.specs
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
        if json_mode:
            body["response_format"] = {"type": "json_object"}
        if extra:
            body.update(extra)
        try:
            data = _json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"flw.llm: the request body is not JSON: {exc}") from None
        headers = {
            "User-Agent": f"flw-python/{__version__}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
        }
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        request = Request(
            where,
            request_bytes("POST", where, headers, data),
            convo,
            self.timeout if timeout is None else _timeout(timeout),
            self.max_retries if max_retries is None else _retries(max_retries),
        )
        return ChatCall(request, on_delta, current_context())

    def _base_url(self, base_url: str | None, key: str | None) -> tuple[str, str]:
        """The base URL and where it came from, for messages."""
        if base_url:
            return base_url, "the base_url= argument"
        if self.base_url:
            return self.base_url, "llm.Client(base_url=)"
        from_env = os.environ.get("OPENAI_BASE_URL")
        if from_env:
            return from_env, "OPENAI_BASE_URL"
        if key is not None:
            return OPENAI_URL, "the default for OPENAI_API_KEY"
        raise ConfigError(_NO_ENDPOINT)


def _conversation(messages: Messages, system: str | None) -> list[dict[str, Any]]:
    """The message list to send: a copy, with ``system`` first when given."""
    if isinstance(messages, str):
        convo: list[dict[str, Any]] = [{"role": "user", "content": messages}]
    elif isinstance(messages, Sequence) and not isinstance(messages, (bytes, bytearray)):
        convo = []
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise TypeError(
                    f"flw.llm: messages[{i}] is a {type(message).__name__}, not a message dict "
                    '(like {"role": "user", "content": "..."})'
                )
            convo.append(message if isinstance(message, dict) else dict(message))
    else:
        raise TypeError(
            f"flw.llm: messages must be a string or a list of message dicts, "
            f"not {type(messages).__name__}"
        )
    if system is not None:
        convo.insert(0, {"role": "system", "content": system})
    return convo


def _first(*values: str | None) -> str | None:
    for value in values:
        if value:
            return value
    return None


def _timeout(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"flw.llm: timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def _retries(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"flw.llm: max_retries must be an integer >= 0, not {value!r}")
    return value


def _turns(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"flw.llm: max_turns must be an integer >= 1, not {value!r}")
    return value


def _too_many_turns(turns: int, reply: Reply) -> LLMError:
    names = ", ".join(sorted({call.name for call in reply.tool_calls}))
    return LLMError(
        f"flw.llm: run_tools: the model still called tools ({names}) after {turns} model "
        f"calls (max_turns={turns})"
    )
