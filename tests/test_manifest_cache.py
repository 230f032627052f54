"""`flw mcp` answers `tools/list` from the manifest of the script's last run
while its workers start, and tells the client when the live tools differ."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from conftest import McpPipe

AGENT = """\
import time
from pathlib import Path

from flw import tool

gate = Path(__file__).with_name("gate")
while not gate.exists():  # the test decides when this worker may start
    time.sleep(0.01)


@tool
def echo(text: str) -> str:
    \"\"\"Return the text.\"\"\"
    return text


from extra import *  # noqa: E402,F403
"""

EXTRA = """\
from flw import tool


@tool
def {name}() -> str:
    \"\"\"A tool defined in a module the script imports.\"\"\"
    return "{name}"
"""


def names(reply: dict) -> list[str]:
    return [t["name"] for t in reply["result"]["tools"]]


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    (tmp_path / "extra.py").write_text(EXTRA.format(name="first"))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("FLW_NO_MANIFEST_CACHE", None)
    # A first run, with the gate open, leaves the manifest in the cache.
    (tmp_path / "gate").touch()
    client = McpPipe(str(script), env=env)
    client.list_tools(1)
    assert names(client.recv(30)) == ["echo", "first"]
    client.close()
    (tmp_path / "gate").unlink()
    return script, env


def test_tools_come_from_the_cache_while_the_worker_starts_then_list_changed(
    project: tuple[Path, dict[str, str]],
) -> None:
    script, env = project
    # The script is unchanged, but a module it imports now defines another tool.
    script.with_name("extra.py").write_text(EXTRA.format(name="second"))
    client = McpPipe(str(script), env=env)
    try:
        client.list_tools(1)
        reply = client.recv(10)  # the worker is held at its import: this is the cache
        assert reply["id"] == 1 and names(reply) == ["echo", "first"]
        script.with_name("gate").touch()
        note = client.recv(30)
        assert note["method"] == "notifications/tools/list_changed"
        client.list_tools(2)
        assert names(client.recv(30)) == ["echo", "second"]
    finally:
        script.with_name("gate").touch()
        client.close()


@pytest.mark.parametrize("why", ["the script changed", "the cache is off"])
def test_without_a_usable_cache_tools_list_waits_for_the_worker(project: tuple[Path, dict[str, str]], why: str) -> None:
    script, env = project
    if why == "the script changed":
        script.write_text(AGENT + "\n# edited\n")
    else:
        env = {**env, "FLW_NO_MANIFEST_CACHE": "1"}
    client = McpPipe(str(script), env=env)
    try:
        client.list_tools(1)
        with pytest.raises(queue.Empty):
            client.recv(1.5)  # no answer while the worker is held
        script.with_name("gate").touch()
        reply = client.recv(30)
        assert reply["id"] == 1 and names(reply) == ["echo", "first"]
        with pytest.raises(queue.Empty):
            client.recv(0.5)  # nothing changed: no list_changed
    finally:
        script.with_name("gate").touch()
        client.close()
