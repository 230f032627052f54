"""A loopback OpenAI-compatible chat-completions server for the tests, the
examples and the notebook: no model and no network, only scripted replies.

Rules (a list of dicts) decide each reply: a regex on the last user or tool
message ("match") or on the whole transcript ("match_any"), how often a rule
may fire ("times"), and the reply itself: text ("content", "repeat"), tool
calls ("tool_calls"), an error ("status", "error", "retry_after") or a slow
stream ("token_delay"). With no matching rule the reply is "echo: <last user
message>". Replies stream as server-sent events, one token per event, and a
client that goes away mid-stream is noticed and recorded. Every request and
its outcome is recorded as an event.

In-process (the tests put tests/ on sys.path):

    from openai_server import OpenAIServer

    with OpenAIServer(rules=[{"match": "weather", "content": "Sunny."}]) as server:
        client = OpenAI(base_url=server.base_url, api_key="any")
        ...
        server.wait_for(lambda events: any(e["event"] == "done" for e in events))

From the command line (prints `listening on http://127.0.0.1:PORT/v1`, then
one line per event, until SIGINT or SIGTERM):

    python3 tests/openai_server.py [--port 8099] [--rules FILE.json] [--token-delay 0.05] [--api-key KEY]

A server run as a subprocess is scripted and inspected over HTTP:
`POST /_rules` (a JSON list of rules, replaces them), `GET /_events`,
`POST /_clear`. Besides those, it answers `POST /v1/chat/completions` and
`GET /v1/models`.

With `-- COMMAND ...` after the options it plays the model for one command
(the examples' offline runs): it runs COMMAND with OPENAI_BASE_URL and
OPENAI_MODEL pointing at itself (stdout stays the command's), passes SIGINT
and SIGTERM on to it, prints its log to stderr when the command ends, and
exits with the command's exit code:

    python3 tests/openai_server.py --rules examples/runaway/loopback.json -- flw call examples/runaway/agent.py ...
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http
import inspect
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

__all__ = ["OpenAIServer", "main"]

Event = dict[str, Any]
Rule = dict[str, Any]

TOKEN = re.compile(r"\s*\S+")
MODELS = {"object": "list", "data": [{"id": "loopback", "object": "model"}]}


def tokenize(content: str) -> list[str]:
    """Splits content into tokens that keep their leading whitespace; joined,
    they give the content back exactly (trailing whitespace goes on the last
    token)."""
    tokens = TOKEN.findall(content)
    if not tokens:
        return [content] if content else []
    rest = content[sum(len(t) for t in tokens) :]
    tokens[-1] += rest
    return tokens


def message_text(message: Any) -> str:
    """The text of one message: its string content, or the "text" fields of
    its content parts joined."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def last_user_text(messages: list[Any]) -> str:
    """The text of the last message whose role is "user" or "tool"."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return message_text(message)
    return ""


def split_arguments(arguments: str) -> list[str]:
    """The arguments JSON string in 2 or 3 pieces, as a streaming model sends it."""
    if len(arguments) < 2:
        return [arguments]
    count = 3 if len(arguments) >= 6 else 2
    cuts = [len(arguments) * i // count for i in range(count + 1)]
    return [arguments[cuts[i] : cuts[i + 1]] for i in range(count)]


def _retry_after(value: Any) -> Any:
    """A Retry-After value as given, as an int when it is integral."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    """An OpenAI-shaped error body."""
    kind, code = "invalid_request_error", None
    if status == 401:
        code = "invalid_api_key"
    elif status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        kind = "server_error"
    if not message:
        try:
            message = http.HTTPStatus(status).phrase
        except ValueError:
            message = f"error {status}"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _check_rules(rules: Any) -> list[Rule]:
    """Validates rules (a list of dicts) and returns a copy of them."""
    if not isinstance(rules, list):
        raise ValueError("rules must be a JSON list of objects")
    checked: list[Rule] = []
    for index, rule in enumerate(rules):
        if not isinstance(rule, dict):
            raise ValueError(f"rule {index} is not an object")
        for key in ("times", "repeat", "status"):
            if key in rule and (not isinstance(rule[key], int) or isinstance(rule[key], bool)):
                raise ValueError(f"rule {index}: {key} must be an integer")
        for key in ("match", "match_any"):
            if key in rule:
                try:
                    re.compile(rule[key], re.DOTALL)
                except (re.error, TypeError) as e:
                    raise ValueError(f"rule {index}: bad {key} regex: {e}") from e
        calls = rule.get("tool_calls")
        if calls is not None and (
            not isinstance(calls, list) or not all(isinstance(c, dict) and "name" in c for c in calls)
        ):
            raise ValueError(f"rule {index}: tool_calls must be a list of objects with a name")
        checked.append(copy.deepcopy(rule))
    return checked


class _Reply:
    """What one request is answered with."""

    def __init__(self, request: int, rule: Rule | None, messages: list[Any], default_delay: float) -> None:
        rule = rule or {}
        content = rule.get("content")
        calls = rule.get("tool_calls") or []
        if content is None and not calls:
            content = "echo: " + last_user_text(messages)
        if content is not None:
            content = str(content) * int(rule.get("repeat", 1))
        self.content: str | None = content
        self.tool_calls: list[dict[str, Any]] = []
        for index, call in enumerate(calls):
            arguments = call.get("arguments", {})
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            self.tool_calls.append(
                {
                    "id": call.get("id") or f"call_{request}_{index}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": arguments},
                }
            )
        self.finish_reason: str = rule.get("finish_reason") or ("tool_calls" if self.tool_calls else "stop")
        self.token_delay = float(rule.get("token_delay", default_delay))
        self.tokens = tokenize(content or "")

    def deltas(self) -> list[dict[str, Any]]:
        """The streamed deltas after the first (role) one: a token each, then
        each tool call's header and its argument pieces."""
        out: list[dict[str, Any]] = [{"content": token} for token in self.tokens]
        for index, call in enumerate(self.tool_calls):
            function = call["function"]
            out.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": function["name"], "arguments": ""},
                        }
                    ]
                }
            )
            for piece in split_arguments(function["arguments"]):
                out.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return out

    def count(self) -> int:
        """Completion tokens: the streamed deltas after the role one (content
        tokens, plus a header and the argument pieces per tool call)."""
        return len(self.deltas())

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = copy.deepcopy(self.tool_calls)
        return message


class _ClientGone(ConnectionError):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-loopback/1"
    disable_nagle_algorithm = True  # each token leaves at once, and no delayed-ACK stalls
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing -------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline(65537).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, _error_body(status, message), headers)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _peer_gone(self) -> bool:
        """Whether the client has closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    # --- routes ---------------------------------------------------------

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path == "/v1/models":
            self._send_json(200, MODELS)
        elif self.path == "/_events":
            self._send_json(200, owner.events)
        else:
            self._send_error(404, f"no route for GET {self.path}")

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send_error(400, "unreadable request body")
            return
        owner = self.server.owner
        if self.path == "/v1/chat/completions":
            self._chat(raw)
        elif self.path == "/_rules":
            try:
                owner.set_rules(json.loads(raw))
            except ValueError as e:
                self._send_error(400, str(e))
                return
            self._send_json(200, {"ok": True})
        elif self.path == "/_clear":
            owner.clear_events()
            self._send_json(200, {"ok": True})
        else:
            self._send_error(404, f"no route for POST {self.path}")

    def _not_found(self) -> None:
        try:
            self._read_body()
        except ValueError:
            self.close_connection = True
        self._send_error(404, f"no route for {self.command} {self.path}")

    do_PUT = do_PATCH = do_DELETE = _not_found

    # --- chat completions -----------------------------------------------

    def _chat(self, raw: bytes) -> None:
        owner = self.server.owner
        authorization = self.headers.get("Authorization")
        body: Any = None
        problem: str | None = None
        try:
            body = json.loads(raw)
        except ValueError:
            problem = "the request body is not valid JSON"
        if problem is None:
            if not isinstance(body, dict):
                problem = "the request body must be a JSON object"
            elif not isinstance(body.get("messages"), list):
                problem = "'messages' is required and must be a list"
            elif not all(isinstance(m, dict) for m in body["messages"]):
                problem = "each message must be an object"
        authorized = owner.api_key is None or _bearer(authorization) == owner.api_key
        request, rule_index, rule = owner._take(body if problem is None and authorized else None)
        stream = isinstance(body, dict) and body.get("stream") is True
        model = body.get("model") if isinstance(body, dict) else None
        messages = body["messages"] if problem is None else []
        if problem is None:
            line = (
                f"request {request}: {'stream' if stream else 'no stream'}, model {model}, "
                f"{len(messages)} messages, last: {json.dumps(last_user_text(messages)[:80], ensure_ascii=False)}"
            )
        else:
            line = f"request {request}: bad request ({problem})"
        owner._record(
            {
                "event": "request",
                "request": request,
                "stream": stream,
                "model": model,
                "body": body,
                "authorization": authorization,
                "rule": rule_index,
            },
            line,
        )
        if not authorized:
            owner._record_error(request, 401, None, "wrong API key" if authorization else "no API key", None)
            self._send_error(401, "Incorrect API key provided." if authorization else "Missing API key.")
            return
        if problem is not None:
            owner._record_error(request, 400, None, problem, None)
            self._send_error(400, problem)
            return
        assert isinstance(body, dict)
        headers: dict[str, str] = {}
        retry_after = None
        if rule is not None and rule.get("retry_after") is not None:
            retry_after = _retry_after(rule["retry_after"])
            headers["Retry-After"] = str(retry_after)
        status = int(rule.get("status", 200)) if rule is not None else 200
        if rule is not None and status != 200:
            owner._record_error(request, status, retry_after, None, rule_index)
            self._send_error(status, rule.get("error"), headers)
            return
        reply = _Reply(request, rule, messages, owner.token_delay)
        if stream:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            self._stream(request, model, reply, _prompt_tokens(messages), usage, headers)
        else:
            self._complete(request, model, reply, _prompt_tokens(messages), headers)

    def _complete(self, request: int, model: Any, reply: _Reply, prompt_tokens: int, headers: dict[str, str]) -> None:
        owner = self.server.owner
        tokens = reply.count()
        body = {
            "id": f"chatcmpl-{request}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": reply.message(), "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
                "total_tokens": prompt_tokens + tokens,
            },
        }
        # Recorded before the reply goes out, so a client holding its reply
        # always finds the done event.
        owner._record_done(request, tokens, reply)
        try:
            self._send_json(200, body, headers)
        except OSError:
            self.close_connection = True
            owner._record_closed(request, 0, tokens)

    def _stream(
        self,
        request: int,
        model: Any,
        reply: _Reply,
        prompt_tokens: int,
        include_usage: bool,
        headers: dict[str, str],
    ) -> None:
        owner = self.server.owner
        created = int(time.time())
        deltas = reply.deltas()

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            chunk: dict[str, Any] = {
                "id": f"chatcmpl-{request}",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            if include_usage:
                chunk["usage"] = None
            self._write_chunk(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        sent = 0
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self._write_chunk(b": keep-alive\n\n")
            event({"role": "assistant", "content": ""})
            for delta in deltas:
                if reply.token_delay > 0:
                    owner._stopping.wait(reply.token_delay)
                if self._peer_gone():
                    raise _ClientGone
                event(delta)
                sent += 1
            # Every token is out: recorded before the finish chunk, so a
            # client that has seen the end always finds the done event.
            owner._record_done(request, len(deltas), reply)
            event({}, reply.finish_reason)
            if include_usage:
                tokens = len(deltas)
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": tokens,
                    "total_tokens": prompt_tokens + tokens,
                }
                self._write_chunk(
                    b"data: "
                    + json.dumps(
                        {
                            "id": f"chatcmpl-{request}",
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    ).encode()
                    + b"\n\n"
                )
            self._write_chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True
            owner._record_closed(request, sent, len(deltas))


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def _prompt_tokens(messages: list[Any]) -> int:
    return sum(len(message_text(m).split()) for m in messages)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: OpenAIServer) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        with self._lock:
            self._connections.add(sock)
        return sock, address

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def process_request(self, request: Any, client_address: Any) -> None:
        def run() -> None:
            try:
                self.process_request_thread(request, client_address)
            finally:
                with self._lock:
                    self._workers.discard(thread)

        thread = threading.Thread(target=run, name="openai-loopback-conn", daemon=True)
        with self._lock:
            self._workers.add(thread)
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away
        super().handle_error(request, client_address)

    def close_connections(self, wake: threading.Event, timeout: float) -> None:
        """Shuts down every open connection, then sets wake (so a stream
        sleeping between tokens notices on its next write), and waits up to
        timeout for the connections' threads."""
        with self._lock:
            connections = list(self._connections)
            workers = list(self._workers)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        wake.set()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class OpenAIServer:
    """An OpenAI-compatible chat-completions server on a loopback port,
    answering from scripted rules and recording every request as events:

    - {"event": "request", "request": n, "stream", "model", "body", "authorization", "rule"}
    - {"event": "error_reply", "request": n, "status", "retry_after"}
    - {"event": "done", "request": n, "tokens"}: every token is out (recorded
      just before the reply's end, so a client holding the whole reply finds it)
    - {"event": "client_closed", "request": n, "tokens_sent", "tokens"}

    Tokens are the streamed deltas after the first: one per content token,
    plus, per tool call, its header and its 2-3 argument pieces; usage's
    completion_tokens counts the same, prompt_tokens the messages' words.
    Request numbers start at 1 and count every chat-completions request."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        token_delay: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.token_delay = float(token_delay)
        self.api_key = api_key
        self.verbose = verbose
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rules: list[Rule] = []
        self._uses: list[int] = []
        self._events: list[Event] = []
        self._generation = 0
        self._requests = 0
        self._print_lock = threading.Lock()
        self._lines: list[str] = []  # the human log, one line per event
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.set_rules(rules or [])

    # --- lifecycle ------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Binds (the same port again after a stop) and serves on a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="openai-loopback", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops accepting, closes open connections (streams in flight end,
        recorded as client_closed) and joins the serving thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.close_connections(self._stopping, timeout=5.0)
        httpd.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None and self.port == 0:
            raise RuntimeError("the server is not started")
        return f"http://{self.host}:{self.port}/v1"

    # --- rules ----------------------------------------------------------

    def set_rules(self, rules: list[Rule]) -> None:
        """Replaces the rules (and their use counts). Raises ValueError on a
        malformed rule."""
        checked = _check_rules(rules)
        with self._lock:
            self._rules = checked
            self._uses = [0] * len(checked)

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return copy.deepcopy(self._rules)

    def _take(self, body: dict[str, Any] | None) -> tuple[int, int | None, Rule | None]:
        """Numbers a request and, for a valid one, picks (and uses up) its rule."""
        with self._lock:
            self._requests += 1
            request = self._requests
            if body is None:
                return request, None, None
            messages = body["messages"]
            last = last_user_text(messages)
            transcript = "\n".join(message_text(m) for m in messages)
            for index, rule in enumerate(self._rules):
                times = rule.get("times")
                if times is not None and self._uses[index] >= int(times):
                    continue
                if "match" in rule and not re.search(rule["match"], last, re.DOTALL):
                    continue
                if "match_any" in rule and not re.search(rule["match_any"], transcript, re.DOTALL):
                    continue
                self._uses[index] += 1
                return request, index, copy.deepcopy(rule)
            return request, None, None

    # --- events ---------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """A snapshot of the events so far."""
        with self._lock:
            return copy.deepcopy(self._events)

    def of(self, kind: str) -> list[Event]:
        """The events of one kind so far ("request", "done", "client_closed", ...)."""
        return [e for e in self.events if e["event"] == kind]

    def requests(self) -> list[Any]:
        """The bodies of the chat-completions requests so far, in order."""
        return [e["body"] for e in self.of("request")]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (base, else this process's) whose model endpoint is
        this server: OPENAI_BASE_URL and OPENAI_MODEL point here, and
        OPENAI_API_KEY is this server's key, or unset when it has none."""
        env = dict(os.environ if base is None else base, OPENAI_BASE_URL=self.base_url, OPENAI_MODEL="loopback")
        env.pop("OPENAI_API_KEY", None)
        if self.api_key is not None:
            env["OPENAI_API_KEY"] = self.api_key
        return env

    def clear_events(self) -> None:
        with self._lock:
            self._events.clear()
            self._generation += 1
            self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[Event]], Any], timeout: float = 10.0, what: str | None = None
    ) -> list[Event]:
        """Waits until predicate(events) holds and returns the events; raises
        AssertionError naming what it waited for on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                generation = self._generation
                events = copy.deepcopy(self._events)
            if predicate(events):
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what or _describe(predicate)}; events: {_summary(events)}"
                )
            with self._lock:
                if self._generation == generation:
                    self._changed.wait(remaining)

    def _record(self, event: Event, line: str) -> None:
        with self._lock:
            self._events.append(event)
            self._lines.append(line)
            self._generation += 1
            self._changed.notify_all()
        if self.verbose:
            with self._print_lock, contextlib.suppress(OSError, ValueError):
                print(line, flush=True)

    def _record_error(self, request: int, status: int, retry_after: Any, reason: str | None, rule: int | None) -> None:
        detail = f" (retry-after {retry_after})" if retry_after is not None else f" ({reason})" if reason else ""
        suffix = f", rule {rule}" if rule is not None else ""
        self._record(
            {"event": "error_reply", "request": request, "status": status, "retry_after": retry_after},
            f"request {request}: {status}{detail}{suffix}",
        )

    def _record_done(self, request: int, tokens: int, reply: _Reply) -> None:
        calls = ", ".join(c["function"]["name"] for c in reply.tool_calls)
        detail = f" (tool calls: {calls})" if calls else ""
        self._record(
            {"event": "done", "request": request, "tokens": tokens},
            f"request {request}: sent {tokens} tokens{detail}, done",
        )

    def _record_closed(self, request: int, sent: int, tokens: int) -> None:
        self._record(
            {"event": "client_closed", "request": request, "tokens_sent": sent, "tokens": tokens},
            f"request {request}: the client closed the connection after {sent} of {tokens} tokens",
        )


def _describe(predicate: Callable[..., Any]) -> str:
    """A predicate's source line (for a lambda) or its name."""
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        source = ""
    if source and getattr(predicate, "__name__", "") == "<lambda>":
        return source
    return getattr(predicate, "__qualname__", repr(predicate))


def _summary(events: list[Event]) -> str:
    short = [{k: v for k, v in e.items() if k != "body"} for e in events[-10:]]
    more = f"(last 10 of {len(events)}) " if len(events) > 10 else ""
    return more + json.dumps(short)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        description="A loopback OpenAI-compatible chat-completions server.",
        usage="%(prog)s [options] [-- COMMAND [ARG ...]]",
        epilog="With `-- COMMAND`, runs COMMAND with OPENAI_BASE_URL and OPENAI_MODEL pointing at this server, "
        "prints the server's log to stderr when it ends, and exits with its exit code.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    parser.add_argument("--rules", help="a JSON file holding a list of rules")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed tokens")
    parser.add_argument("--api-key", help="answer 401 unless the request carries this bearer key")
    args = parser.parse_args(argv)
    rules: list[Rule] = []
    if args.rules:
        with open(args.rules, encoding="utf-8") as f:
            rules = json.load(f)
    server = OpenAIServer(
        rules, args.token_delay, host=args.host, port=args.port, api_key=args.api_key, verbose=not command
    )
    signals: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.start()
    if command:
        return _run_command(server, command, signals)
    print(f"listening on {server.base_url}", flush=True)
    while not signals:
        time.sleep(0.1)
    server.stop()
    return 0


def _run_command(server: OpenAIServer, command: list[str], signals: list[int]) -> int:
    """Runs command against the server (stdin, stdout and stderr are its own),
    passes SIGINT and SIGTERM on to it, then prints the server's log to
    stderr. A SIGINT from the terminal (which reached the command too, in the
    same foreground process group) is not sent twice."""
    try:
        proc = subprocess.Popen(command, env=server.env())
    except OSError as e:
        server.stop()
        print(f"openai_server: cannot run {command[0]}: {e}", file=sys.stderr)
        return 127
    while True:
        try:
            code = proc.wait(0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        while signals:
            signum = signals.pop(0)
            if signum == signal.SIGINT and _terminal_sent_it():
                continue
            with contextlib.suppress(OSError):
                proc.send_signal(signum)
    server.stop()
    with server._lock:
        lines = list(server._lines)
    sys.stderr.write("".join(f"{line}\n" for line in [f"loopback model at {server.base_url}", *lines]))
    sys.stderr.flush()
    return code if code >= 0 else 128 - code


def _terminal_sent_it() -> bool:
    """Whether our terminal's foreground process group is ours (so a Ctrl-C
    there reached the command as well as us)."""
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        try:
            return os.tcgetpgrp(stream.fileno()) == os.getpgrp()
        except (OSError, ValueError, AttributeError):
            continue
    return False


if __name__ == "__main__":
    sys.exit(main())
