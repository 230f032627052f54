"""flw.llm over https: a TLS relay (a self-signed certificate made with the
openssl command) in front of the loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flw import Context, llm
from flw._context import _CURRENT
from flw.llm import _transport
from llm_helpers import HANG, LONG, cancel_achat_after, closed

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until either side ends, then end both."""
    with contextlib.suppress(OSError):
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    for sock in (source, sink):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class TLSRelay:
    """Accepts TLS on a loopback port and relays each connection to ``port`` in clear."""

    def __init__(self, context: ssl.SSLContext, port: int) -> None:
        self.context = context
        self.port = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        backend = socket.create_connection(("127.0.0.1", self.port))
        back = threading.Thread(target=pump, args=(backend, client), daemon=True)
        back.start()
        pump(client, backend)
        back.join(5)
        client.close()
        backend.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_url(
    certificate: tuple[Path, Path], openai_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An https base URL for the loopback server, trusted by flw.llm."""
    cert, key = certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(_transport, "_ssl_context", client_side)
    monkeypatch.setenv("OPENAI_MODEL", "loopback")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    relay = TLSRelay(server_side, openai_server.port)
    host, port = relay.address
    yield f"https://{host}:{port}/v1"
    relay.close()


def test_chat_over_https(https_url: str) -> None:
    seen: list[str] = []
    assert (
        llm.chat("over tls", base_url=https_url, on_delta=seen.append).content == "echo: over tls"
    )
    assert seen == ["echo:", " over", " tls"]
    reply = asyncio.run(llm.achat("async tls", base_url=https_url, stream=False))
    assert reply.content == "echo: async tls"


def test_an_untrusted_certificate_is_a_connection_error(
    https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_transport, "_ssl_context", ssl.create_default_context())
    with pytest.raises(llm.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        llm.chat("hi", base_url=https_url)
    with pytest.raises(llm.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(llm.achat("hi", base_url=https_url))


def test_sync_cancel_over_https_wakes_the_read(https_url: str, openai_server: Any) -> None:
    openai_server.set_rules([{"content": LONG, "token_delay": 0.05}])
    sent: list[dict[str, Any]] = []
    ctx = Context(1, "t")
    ctx._attach(sent.append)
    errors: list[BaseException] = []

    def call() -> None:
        token = _CURRENT.set(ctx)
        try:
            llm.chat("go", base_url=https_url)
        except BaseException as exc:
            errors.append(exc)
        finally:
            _CURRENT.reset(token)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + HANG
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    ctx._cancel()
    thread.join(HANG)
    assert not thread.is_alive(), "the blocked TLS read was not woken"
    assert [type(e) for e in errors] == [llm.Cancelled]
    openai_server.wait_for(closed, timeout=HANG)


def test_async_cancel_over_https(https_url: str, openai_server: Any) -> None:
    openai_server.set_rules([{"content": LONG, "token_delay": 0.05}])
    cancel_achat_after(2, base_url=https_url)
    openai_server.wait_for(closed, timeout=HANG)
