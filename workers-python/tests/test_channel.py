"""The bounded line reader and the locked line writer."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import pytest

from flw.worker import _channel
from flw.worker._channel import LineReader, LineWriter
from flw.worker._protocol import ProtocolError, decode


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def feed(write_fd: int, data: bytes) -> threading.Thread:
    def run() -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]
        os.close(write_fd)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_reader_splits_lines_and_keeps_carriage_returns(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    feed(write_fd, b"a\nbb\r\n\nccc\n").join()
    reader = LineReader(read_fd, 100)
    assert list(reader) == [b"a", b"bb\r", b"", b"ccc"]
    assert reader.torn is False


def test_reader_reports_a_torn_last_line(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    feed(write_fd, b"whole\nhalf").join()
    reader = LineReader(read_fd, 100)
    assert list(reader) == [b"whole"]
    assert reader.torn is True


def test_reader_skips_an_over_long_line_and_goes_on(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    read_fd, write_fd = pipe
    limit = 1000
    requested: list[int] = []
    real_read = os.read

    def spy(fd: int, n: int) -> bytes:
        requested.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(_channel.os, "read", spy)
    thread = feed(write_fd, b"x" * 1000 + b"\n" + b"y" * 3_000_000 + b"\n" + b"z\n")
    items = list(LineReader(read_fd, limit))
    thread.join()
    assert items[0] == b"x" * 1000  # exactly at the limit is fine
    assert isinstance(items[1], ProtocolError)
    assert items[1].code == "line_too_long"
    assert "1000 bytes" in items[1].message
    assert items[2:] == [b"z"]
    # Reads while a line is being collected never ask for more than limit + 1
    # bytes in all: the 3 MB line was dropped in 64 KiB reads, not buffered.
    assert requested[:2] == [limit + 1, limit + 1]
    assert max(requested) <= 65536


def test_reader_line_of_limit_plus_one_is_too_long(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    feed(write_fd, b"x" * 11 + b"\nok\n").join()
    items = list(LineReader(read_fd, 10))
    assert isinstance(items[0], ProtocolError)
    assert items[1:] == [b"ok"]


def test_writer_writes_whole_lines_past_the_pipe_buffer(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer = LineWriter(write_fd, 1 << 24)
    value = "v" * 300_000  # several times a pipe buffer: needs partial writes
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            data = os.read(read_fd, 65536)
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    threads = [
        threading.Thread(target=writer.send, args=({"type": "result", "id": i, "value": value},))
        for i in range(1, 5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.close(write_fd)
    reader.join()
    lines = b"".join(chunks).split(b"\n")
    assert lines[-1] == b""
    decoded = [decode(line, "worker") for line in lines[:-1]]
    assert sorted(m["id"] for m in decoded) == [1, 2, 3, 4]
    assert all(m["value"] == value for m in decoded)


def test_writer_refuses_an_over_long_line_before_writing(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    writer = LineWriter(write_fd, 50)
    with pytest.raises(ProtocolError) as info:
        writer.send({"type": "result", "id": 1, "value": "x" * 100})
    assert info.value.code == "line_too_long"
    assert "50 bytes" in info.value.message
    writer.send({"type": "result", "id": 1, "value": "ok"})
    os.close(write_fd)
    assert os.read(read_fd, 1000) == b'{"type":"result","id":1,"value":"ok"}\n'


def test_writer_calls_on_broken_when_the_peer_is_gone(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.close(read_fd)
    seen: list[OSError] = []
    writer = LineWriter(write_fd, 1000, seen.append)
    with pytest.raises(BrokenPipeError):
        writer.send({"type": "heartbeat", "seq": 1})
    assert len(seen) == 1
