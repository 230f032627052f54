"""``Client``: chat requests to an OpenAI-compatible endpoint, and the tool-call loop.

Each method resolves its configuration when it is called (argument, then
the client's, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` /
``OPENAI_MODEL``) into a ``_Prepared`` request (``_prepare``, shared by all
six methods), and runs it as a ``ChatCall`` (``_call``). ``run_tools``
and ``arun_tools`` drive one ``_ToolLoop`` over those requests; only the
awaiting differs.
"""

from __future__ import annotations

import json as _json
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Union

from .._context import current_context
from .._version import __version__
from ._call import AsyncStream, ChatCall, OnDelta, Stream
from ._errors import ConfigError, LLMError
from ._exchange import Request
from ._http import Endpoint, endpoint, header_problem, request_bytes
from ._reply import Reply, ToolCall
from ._tools import ToolLike, ToolSet

Messages = Union[str, Sequence[Mapping[str, Any]]]
"""One user message, or a list of OpenAI message dicts."""


OPENAI_URL = "https://api.openai.com/v1"

MAX_TIMEOUT = 24 * 3600.0
"""The longest ``timeout``, in seconds."""

MAX_RETRIES = 100
"""The most ``max_retries``."""

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
    as local servers want), ``OPENAI_MODEL``. ``timeout`` is in seconds
    (above 0, at most 24 h), for connecting and for each read;
    ``max_retries`` (0 to 100) counts the further attempts after a
    retryable failure.
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
        self.timeout = _timeout(timeout, "llm.Client(timeout=)")
        self.max_retries = _retries(max_retries, "llm.Client(max_retries=)")

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
        chunks: bool = True,
    ) -> Reply:
        """Send a chat request and return the model's ``Reply``.

        ``messages`` is a string (one user message) or a list of OpenAI
        message dicts (never changed); ``system`` prepends a system message.
        ``temperature``, ``max_tokens`` and ``tool_choice`` go into the body
        when given, ``json=True`` asks for a JSON object
        (``response_format``), ``extra`` is merged into the body last.
        ``tools`` are ``@flw.tool`` functions, plain functions (schema from
        their type hints) or OpenAI tool dicts. Each text delta goes to
        ``on_delta`` and, inside a worker call, to ``ctx.chunk()`` as it
        arrives (``chunks=False``: not to the call); with ``stream=False``
        the whole text is one delta. ``timeout``, ``max_retries``,
        ``base_url``, ``api_key`` and ``model`` override the client's.
        """
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        return prepared.call().run()

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
        chunks: bool = True,
    ) -> Reply:
        """``chat`` over asyncio; cancelling the task closes the connection at once.

        ``on_delta`` may be ``async``: it is awaited.
        """
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        return await prepared.call().arun()

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
        chunks: bool = True,
    ) -> Stream:
        """A streamed ``chat``: iterate the returned ``Stream`` for the text deltas.

        The request is made on the first ``next()``; ``stream.reply`` is the
        ``Reply`` once the iteration ended. Leaving early: ``stream.close()``
        (or ``with llm.stream(...) as s:``) closes the connection.
        """
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        return Stream(prepared.call())

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
        chunks: bool = True,
    ) -> AsyncStream:
        """``stream`` over asyncio: ``async for text in llm.astream(...)``.

        Leaving early: ``await s.aclose()`` (or ``async with llm.astream(...) as s:``).
        """
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        return AsyncStream(prepared.call())

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
        chunks: bool = True,
    ) -> Reply:
        """Chat with ``tools`` until the model answers without calling one.

        Each tool the model calls runs with its arguments as keyword
        arguments (an async tool with ``asyncio.run``); its result goes back
        as a ``tool`` message (strings as they are, other values as JSON;
        an exception as ``"error: <tool>: <Type>: <message>"``). Returns the
        last ``Reply``, whose ``messages`` is the whole conversation. Every
        tool must be callable (an OpenAI tool dict is refused before the
        first model call). More than ``max_turns`` model calls raise
        ``LLMError``.
        """
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        prepared.toolset.check_callable("run_tools", sync=True)
        loop = _ToolLoop(prepared, max_turns)
        while True:
            reply = loop.call().run()
            calls = loop.tool_calls(reply)
            if not calls:
                return reply
            for tool_call in calls:
                loop.add_result(tool_call, prepared.toolset.call(tool_call))

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
        chunks: bool = True,
    ) -> Reply:
        """``run_tools`` over asyncio: async tools are awaited, sync ones run in a thread."""
        prepared = self._prepare(
            messages,
            system=system,
            tools=tools,
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
            chunks=chunks,
        )
        prepared.toolset.check_callable("arun_tools", sync=False)
        loop = _ToolLoop(prepared, max_turns)
        while True:
            reply = await loop.call().arun()
            calls = loop.tool_calls(reply)
            if not calls:
                return reply
            for tool_call in calls:
                loop.add_result(tool_call, await prepared.toolset.acall(tool_call))

    # -- building a request -----------------------------------------------------

    def _prepare(
        self,
        messages: Messages,
        *,
        system: str | None,
        tools: Sequence[ToolLike] | None,
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
        chunks: bool,
    ) -> _Prepared:
        """Check the arguments and resolve the configuration: a request but for its messages."""
        convo = _conversation(messages, system)
        toolset = ToolSet(tools)
        if timeout is None:  # the client's are checked again: they may have been set since
            seconds = _timeout(self.timeout, "llm.Client(timeout=)")
        else:
            seconds = _timeout(timeout, "timeout=")
        if max_retries is None:
            retries = _retries(self.max_retries, "llm.Client(max_retries=)")
        else:
            retries = _retries(max_retries, "max_retries=")
        key = self._api_key(api_key)
        url, source = self._base_url(base_url, key)
        try:
            where = endpoint(url, "chat/completions")
        except ValueError as exc:
            raise ConfigError(
                f"flw.llm: the base URL {url!r} from {source} is invalid: {exc}"
            ) from None
        name = _first(model, self.model, os.environ.get("OPENAI_MODEL"))
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
        headers = {
            "User-Agent": f"flw-python/{__version__}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "Accept-Encoding": "identity",
        }
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return _Prepared(where, headers, body, convo, toolset, seconds, retries, on_delta, chunks)

    def _api_key(self, api_key: str | None) -> str | None:
        """The API key, checked: it goes into a header."""
        for key, source in (
            (api_key, "the api_key= argument"),
            (self.api_key, "llm.Client(api_key=)"),
            (os.environ.get("OPENAI_API_KEY"), "OPENAI_API_KEY"),
        ):
            if key:
                problem = header_problem(key)
                if problem is not None:  # never show the key itself
                    raise ConfigError(
                        f"flw.llm: the API key from {source} cannot be sent in a header: {problem}"
                    )
                return key
        return None

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


class _Prepared(NamedTuple):
    """A chat request resolved by ``Client._prepare``: all but the conversation may stay."""

    where: Endpoint
    headers: dict[str, str]
    body: dict[str, Any]
    convo: list[dict[str, Any]]  # the first conversation
    toolset: ToolSet
    timeout: float
    max_retries: int
    on_delta: OnDelta
    chunks: bool

    def call(self, convo: list[dict[str, Any]] | None = None) -> ChatCall:
        """The request with ``convo`` (else the first conversation), ready to run."""
        messages = self.convo if convo is None else convo
        body = dict(self.body)
        body["messages"] = messages
        try:
            data = _json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise TypeError(f"flw.llm: the request body is not JSON: {exc}") from None
        request = Request(
            self.where,
            request_bytes("POST", self.where, self.headers, data),
            messages,
            self.timeout,
            self.max_retries,
        )
        return ChatCall(request, self.on_delta, current_context(), self.chunks)


class _ToolLoop:
    """The turns of ``run_tools`` without the I/O: the sync and async loops drive it.

    ``call()`` is the next model request; ``tool_calls(reply)`` takes its
    reply and gives the tool calls to run (none: the reply is the answer),
    and ``add_result`` adds each one's ``tool`` message to the conversation.
    """

    def __init__(self, prepared: _Prepared, max_turns: int) -> None:
        self.prepared = prepared
        self.turns = _turns(max_turns)
        self.turn = 0
        self.convo = prepared.convo

    def call(self) -> ChatCall:
        """The model request of the next turn."""
        return self.prepared.call(self.convo)

    def tool_calls(self, reply: Reply) -> list[ToolCall]:
        """The calls to run after ``reply``; ``LLMError`` after ``max_turns`` model calls."""
        self.turn += 1
        if not reply.tool_calls:
            return []
        if self.turn >= self.turns:
            raise _too_many_turns(self.turns, reply)
        self.convo = list(reply.messages)
        return reply.tool_calls

    def add_result(self, call: ToolCall, content: str) -> None:
        """Add a tool's result (or error text) to the conversation."""
        self.convo.append({"role": "tool", "tool_call_id": call.id, "content": content})


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


def _timeout(value: float, name: str) -> float:
    """A timeout in seconds: above 0, at most ``MAX_TIMEOUT`` (so not inf or nan)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise ValueError(
            f"flw.llm: {name} must be a number of seconds above 0 and at most "
            f"{MAX_TIMEOUT:g} (24 h), not {value!r}"
        )
    return float(value)


def _retries(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise ValueError(
            f"flw.llm: {name} must be an integer from 0 to {MAX_RETRIES}, not {value!r}"
        )
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
