"""``Reply`` and ``ToolCall``, and the accumulator that builds a reply from the endpoint's JSON.

``Accumulator.add_chunk`` takes the chunks of a streamed response (content
deltas, tool-call deltas by index with their arguments concatenated, the
finish reason, the usage chunk) and returns each chunk's text;
``Accumulator.add_response`` takes a whole non-streamed response.
``Accumulator.reply`` then makes the ``Reply``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ._errors import LLMError


@dataclass
class ToolCall:
    """A function the model asked to call.

    ``arguments`` is the parsed arguments object. When the model sent
    arguments that are not a JSON object, ``arguments`` is ``{}``,
    ``arguments_json`` keeps what it sent and ``error`` says what is wrong
    (``run_tools`` sends that back to the model instead of calling the tool).
    """

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str
    error: str | None = None

    def to_message(self) -> dict[str, Any]:
        """The call in the OpenAI form of an assistant message's ``tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json or "{}"},
        }


@dataclass
class Reply:
    """The model's answer.

    ``content`` is its text (``""`` when none), ``tool_calls`` the functions
    it asked for, ``message`` the assistant message to append to the
    conversation, ``messages`` the whole conversation including that
    message (continue it with ``llm.chat(reply.messages + [...])``), ``raw``
    the last JSON chunk or response received.
    """

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    message: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    raw: Any = None

    def json(self) -> Any:
        """The content parsed as JSON (a surrounding Markdown code fence is allowed).

        Raises ``LLMError`` showing the start of the content when it is not JSON.
        """
        text = _unfence(self.content)
        try:
            return json.loads(text)
        except ValueError as exc:
            start = self.content[:200] + ("..." if len(self.content) > 200 else "")
            raise LLMError(f"flw.llm: the reply is not JSON ({exc}): {start!r}") from None


def _unfence(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) > 6:
        body = stripped[3:-3]
        first, newline, rest = body.partition("\n")
        if newline and (not first.strip() or first.strip().isalnum()):
            return rest
    return stripped


class _Slot:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class Accumulator:
    """Collects the pieces of one response into a ``Reply``."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.raw: Any = None
        self.size = 0  # the characters of text and tool-call arguments so far
        self._slots: dict[int, _Slot] = {}

    def add_chunk(self, chunk: Any) -> str:
        """Take one streamed chunk (a ``chat.completion.chunk``); return its text."""
        self.raw = chunk
        if not isinstance(chunk, dict):
            return ""
        self._common(chunk)
        text = ""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    self.parts.append(content)
                    self.size += len(content)
                    text += content
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        self._tool_delta(call)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return text

    def add_response(self, response: Any) -> str:
        """Take a whole (non-streamed) ``chat.completion`` response; return its text."""
        self.raw = response
        choices = response.get("choices") if isinstance(response, dict) else None
        if not choices or not isinstance(choices[0], dict):
            shown = json.dumps(response)[:300]
            raise LLMError(f"flw.llm: the response has no choices: {shown}")
        self._common(response)
        choice = choices[0]
        message = choice.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            content = ""
        self.parts.append(content)
        self.size += len(content)
        for call in (message.get("tool_calls") if isinstance(message, dict) else None) or ():
            if isinstance(call, dict):
                self._tool_delta(call)
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        return content

    def reply(self, messages: list[dict[str, Any]]) -> Reply:
        """The ``Reply``; ``messages`` is the conversation the request sent."""
        calls = [_tool_call(index, slot) for index, slot in sorted(self._slots.items())]
        content = "".join(self.parts)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            message["content"] = content or None
            message["tool_calls"] = [call.to_message() for call in calls]
        return Reply(
            content=content,
            tool_calls=calls,
            finish_reason=self.finish_reason,
            usage=self.usage,
            model=self.model,
            message=message,
            messages=[*messages, message],
            raw=self.raw,
        )

    def _common(self, data: dict[str, Any]) -> None:
        if isinstance(data.get("model"), str):
            self.model = data["model"]
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]

    def _tool_delta(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        call_id = call.get("id")
        if not isinstance(index, int):  # servers that send whole calls without an index
            known = [i for i, slot in self._slots.items() if call_id and slot.id == call_id]
            if known:
                index = known[0]
            elif call_id or not self._slots:
                index = len(self._slots)
            else:
                index = max(self._slots)
        slot = self._slots.get(index)
        if slot is None:
            slot = self._slots[index] = _Slot()
        if isinstance(call_id, str) and call_id:
            slot.id = call_id
        function = call.get("function")
        if isinstance(function, dict):
            name = function.get("name")
            if isinstance(name, str) and name:
                slot.name = name
            arguments = function.get("arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = json.dumps(arguments)  # some servers send the object itself
            if isinstance(arguments, str):
                slot.arguments.append(arguments)
                self.size += len(arguments)


def _tool_call(index: int, slot: _Slot) -> ToolCall:
    text = "".join(slot.arguments)
    call_id = slot.id or f"call_{index}"
    if not text.strip():
        return ToolCall(call_id, slot.name, {}, text)
    try:
        value = json.loads(text)
    except ValueError as exc:
        return ToolCall(call_id, slot.name, {}, text, f"the arguments are not valid JSON ({exc})")
    if not isinstance(value, dict):
        kind = type(value).__name__
        return ToolCall(call_id, slot.name, {}, text, f"the arguments are a {kind}, not an object")
    return ToolCall(call_id, slot.name, value, text)
