"""Model calls from tools: chat with an OpenAI-compatible endpoint over plain HTTP.

Works with OpenAI, vLLM, the llama.cpp server and Ollama's ``/v1`` API;
standard library only. The endpoint comes from ``OPENAI_BASE_URL`` (or
``https://api.openai.com/v1`` when only ``OPENAI_API_KEY`` is set), the key
from ``OPENAI_API_KEY`` (none: no ``Authorization`` header), the model from
``OPENAI_MODEL``; arguments override them::

    from flw import llm, tool

    @tool
    def summarize(text: str) -> str:
        return llm.chat(f"Summarize:\\n{text}", system="Be brief.").content

Replies are streamed by default: inside a worker call each text delta is
also sent as a chunk of the call (``ctx.chunk``), so ``flw call`` and MCP
clients see the tokens as they come (``chunks=False`` keeps them out; with
``stream=False`` the whole text is one chunk). Cancelling the call closes
the connection: at once in async tools (``achat``, ``astream``,
``arun_tools``), and in sync tools too (a blocked connect, write or read is
woken; the call raises ``Cancelled``). Only a DNS lookup under way is waited
for (flw's kill after ``cancel_grace`` still ends it).

- ``chat`` / ``achat``: one request, a ``Reply``.
- ``stream`` / ``astream``: iterate the text deltas; ``.reply`` at the end.
- ``run_tools`` / ``arun_tools``: the tool-call loop with Python functions.
- ``Client``: the same methods with a fixed endpoint, key, model and limits;
  the module functions use a default ``Client()`` that reads the
  environment at each call.

Retries: 408, 409, 429, 5xx and connection errors before any byte of the
response are retried ``max_retries`` times (0.5 s doubling, at most 8 s, or
what ``Retry-After`` / ``retry-after-ms`` asks up to 60 s). Errors:
``LLMError`` and its subclasses ``ConfigError``, ``APIError`` (``.status``,
``.body``), ``TimeoutError``, ``ConnectionError`` and ``Cancelled``. A
response past a limit (a 64 MiB JSON body, 16 MiB for a stream's line or
event, 64 Mi characters of streamed reply) raises ``LLMError``.
"""

from __future__ import annotations

from ._call import AsyncStream, OnDelta, Stream
from ._client import Client, Messages
from ._errors import APIError, Cancelled, ConfigError, ConnectionError, LLMError, TimeoutError
from ._reply import Reply, ToolCall
from ._tools import ToolLike

__all__ = [
    "APIError",
    "AsyncStream",
    "Cancelled",
    "Client",
    "ConfigError",
    "ConnectionError",
    "LLMError",
    "Messages",
    "OnDelta",
    "Reply",
    "Stream",
    "TimeoutError",
    "ToolCall",
    "ToolLike",
    "achat",
    "arun_tools",
    "astream",
    "chat",
    "run_tools",
    "stream",
]

_default = Client()

chat = _default.chat
achat = _default.achat
stream = _default.stream
astream = _default.astream
run_tools = _default.run_tools
arun_tools = _default.arun_tools
