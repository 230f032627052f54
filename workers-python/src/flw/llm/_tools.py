"""Tools for ``flw.llm``: OpenAI tool definitions from functions, and calling them.

A tool is an ``@flw.tool`` function (its registered ``Tool`` is used, with
its name and description), a ``flw.Tool``, a plain callable (a ``Tool`` is
built for it, unregistered, with the same schema machinery), or a ready
OpenAI tool dict (sent as is; ``run_tools`` refuses it, having nothing to
call). What a tool call gives the model: its result as text, or
``error: <tool>: <what went wrong>``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Union

from .._context import current_context
from .._convert import NotJSONSerializable, to_json
from .._tool import Tool, ToolDefinitionError, registered_tools
from ._errors import Cancelled, LLMError
from ._reply import ToolCall

ToolLike = Union[Callable[..., Any], Tool, Mapping[str, Any]]
"""A tool for ``tools=``: an ``@flw.tool`` function, ``flw.Tool``, function or OpenAI dict."""

_API_NAME = re.compile(r"[^A-Za-z0-9_-]")


class ToolSet:
    """The tools of a request: their OpenAI definitions and what to call for each name.

    Names outside OpenAI's ``^[A-Za-z0-9_-]{1,64}$`` (flw allows dots) are
    sent with the other characters replaced by ``_``.
    """

    def __init__(self, items: Sequence[ToolLike] | None) -> None:
        self.specs: list[dict[str, Any]] = []
        self._tools: dict[str, Tool] = {}
        self._dicts: dict[str, int] = {}  # the names of the OpenAI tool dicts, and their index
        if items is None:
            return
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise TypeError(f"flw.llm: tools must be a list, not {type(items).__name__}")
        for i, item in enumerate(items):
            if isinstance(item, Mapping):
                self._add_dict(i, item)
            else:
                self._add_tool(i, item)

    def __bool__(self) -> bool:
        return bool(self.specs)

    def _claim(self, name: str, what: str) -> None:
        if name in self._tools or name in self._dicts:
            raise ValueError(f"flw.llm: two tools are named {name!r} (the second is {what})")

    def _add_dict(self, i: int, item: Mapping[str, Any]) -> None:
        spec = dict(item)
        if "function" not in spec and "name" in spec:  # a bare function definition
            spec = {"type": "function", "function": spec}
        function = spec.get("function")
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise TypeError(
                f"flw.llm: tools[{i}] is a dict but not an OpenAI tool "
                '{"type": "function", "function": {"name": ..., "parameters": ...}}'
            )
        self._claim(function["name"], f"tools[{i}]")
        self._dicts[function["name"]] = i
        self.specs.append(spec)

    def _add_tool(self, i: int, item: Any) -> None:
        entry = item if isinstance(item, Tool) else _registered(item)
        if entry is None:
            try:
                entry = Tool(item)
            except ToolDefinitionError as exc:
                raise ToolDefinitionError(f"flw.llm: tools[{i}]: {exc}") from None
        name = _API_NAME.sub("_", entry.name)[:64]
        self._claim(name, f"tools[{i}], {entry.qualname}")
        self._tools[name] = entry
        self.specs.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": entry.description,
                    "parameters": entry.input_schema,
                },
            }
        )

    # -- calling ------------------------------------------------------------

    def check_callable(self, where: str, *, sync: bool) -> None:
        """Raise at once unless ``where`` (``run_tools``) can call every tool.

        An OpenAI tool dict has no function: ``TypeError``. The ``sync`` loop
        runs an async tool with ``asyncio.run``, which needs a thread without
        a running event loop: ``LLMError`` otherwise.
        """
        if self._dicts:
            name, i = next(iter(self._dicts.items()))
            raise TypeError(
                f"flw.llm: {where}: tools[{i}] ({name!r}) is an OpenAI tool dict, which "
                f"{where} cannot call: pass the function itself (a dict is for llm.chat)"
            )
        if sync:
            for entry in self._tools.values():
                if entry.is_async:
                    _no_running_loop(entry)

    def _target(self, call: ToolCall) -> Tool | str:
        """The tool to call, or the error text to send back instead."""
        entry = self._tools.get(call.name)
        if entry is None:
            names = ", ".join(sorted(self._tools)) or "none"
            return f"error: {call.name}: no such tool (tools: {names})"
        if call.error is not None:
            return (
                f"error: {call.name}: {call.error}: {call.arguments_json[:200]!r}; "
                "send a JSON object"
            )
        return entry

    def call(self, call: ToolCall) -> str:
        """Run the tool the model asked for; its result (or error) as text for the model.

        An async tool runs with ``asyncio.run``, which needs a thread without a
        running event loop.
        """
        entry = self._target(call)
        if isinstance(entry, str):
            return entry
        try:
            positional, keywords = entry.bind(call.arguments, current_context())
            value = entry.fn(*positional, **keywords)
        except Cancelled:
            raise
        except Exception as exc:
            return _error_text(call, exc)
        if inspect.iscoroutine(value):
            _no_running_loop(entry, value)
            try:
                value = asyncio.run(value)
            except Cancelled:
                raise
            except Exception as exc:
                return _error_text(call, exc)
        return result_text(value)

    async def acall(self, call: ToolCall) -> str:
        """Like ``call``; a sync tool runs in a thread (``asyncio.to_thread``)."""
        entry = self._target(call)
        if isinstance(entry, str):
            return entry
        try:
            positional, keywords = entry.bind(call.arguments, current_context())
            if entry.is_async:
                value = await entry.fn(*positional, **keywords)
            else:
                value = await asyncio.to_thread(entry.fn, *positional, **keywords)
                if inspect.isawaitable(value):
                    value = await value
        except Cancelled:
            raise
        except Exception as exc:
            return _error_text(call, exc)
        return result_text(value)


def _registered(fn: Any) -> Tool | None:
    """The ``Tool`` that ``@flw.tool`` registered for ``fn``, if any."""
    for entry in registered_tools():
        if entry.fn is fn:
            return entry
    return None


def _no_running_loop(entry: Tool, coroutine: Any = None) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if coroutine is not None:
        coroutine.close()
    raise LLMError(
        f"flw.llm: run_tools: tool {entry.name!r} is async and this thread runs an event "
        "loop; use 'await llm.arun_tools(...)' there"
    )


def result_text(value: Any) -> str:
    """A tool's result as the content of a ``tool`` message: strings as they are, else JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(to_json(value), ensure_ascii=False)
    except (NotJSONSerializable, TypeError, ValueError, RecursionError):
        return str(value)


def _error_text(call: ToolCall, exc: BaseException) -> str:
    return f"error: {call.name}: {type(exc).__name__}: {exc}"
