"""Hot swap through the real binary: `flw mcp` watches its worker script and
serves each saved version in a new generation of workers, under load, with
the official MCP Python SDK as the client.

The script is rewritten ten times while calls run: a plain change, a tool
added, a schema change, a broken edit and its fix, a tool removed. No call
may fail except calls to the removed (or not yet added) tool, every result
comes from the code that was current when it started, and no worker of an
old generation outlives it."""

from __future__ import annotations

import os
import shutil
import signal
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types

from conftest import FLW, McpPipe, alive, children, group_members, run_flw, wait_until, workers

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


# --- the scripts ----------------------------------------------------------


def python_script(n: int, *, added: bool = False, upper: bool = False, broken: bool = False) -> str:
    echo_params = "text: str, upper: bool = False" if upper else "text: str"
    echo_body = 'out = f"v{n}:{text}"\n    return out.upper() if upper else out' if upper else 'return f"v{n}:{text}"'
    parts = [
        "import os",
        "import time",
        "from flw import tool",
        "",
        "@tool",
        "def version() -> str:",
        '    """The version of this script."""',
        f'    return "v{n}"',
        "",
        "@tool",
        "def pid() -> int:",
        '    """The process id of the worker."""',
        "    return os.getpid()",
        "",
        "@tool",
        f"def echo({echo_params}) -> str:",
        '    """Return the text, marked with the version."""',
        "    " + echo_body.replace("{n}", str(n)),
        "",
        "@tool",
        "def nap(seconds: float) -> str:",
        '    """Sleep, then say which version slept."""',
        "    time.sleep(seconds)",
        f'    return "v{n} slept"',
    ]
    if added:
        parts += [
            "",
            "@tool",
            "def added(x: int) -> int:",
            '    """A tool some versions have."""',
            "    return x + 1",
        ]
    if broken:
        parts += ["", "def broken(:", "    pass"]
    return "\n".join(parts) + "\n"


def ts_script(n: int, *, added: bool = False, upper: bool = False, broken: bool = False) -> str:
    echo_props = (
        '{ text: { type: "string" }, upper: { type: "boolean", default: false } }'
        if upper
        else '{ text: { type: "string" } }'
    )
    echo_run = (
        f"async ({{ text, upper = false }}) => (upper ? `v{n}:${{text}}`.toUpperCase() : `v{n}:${{text}}`)"
        if upper
        else f"async ({{ text }}) => `v{n}:${{text}}`"
    )
    parts = [
        'import { tool } from "flw-worker";',
        "",
        "export const version = tool({",
        '  description: "The version of this script.",',
        '  input: { type: "object", properties: {} },',
        f'  run: async () => "v{n}",',
        "});",
        "",
        "export const pid = tool({",
        '  description: "The process id of the worker.",',
        '  input: { type: "object", properties: {} },',
        "  run: async () => process.pid,",
        "});",
        "",
        "export const echo = tool({",
        '  description: "Return the text, marked with the version.",',
        f'  input: {{ type: "object", properties: {echo_props}, required: ["text"] }},',
        f"  run: {echo_run},",
        "});",
        "",
        "export const nap = tool({",
        '  description: "Sleep, then say which version slept.",',
        '  input: { type: "object", properties: { seconds: { type: "number" } }, required: ["seconds"] },',
        "  run: async ({ seconds }) => {",
        "    await new Promise((r) => setTimeout(r, seconds * 1000));",
        f'    return "v{n} slept";',
        "  },",
        "});",
    ]
    if added:
        parts += [
            "",
            "export const added = tool({",
            '  description: "A tool some versions have.",',
            '  input: { type: "object", properties: { x: { type: "integer" } }, required: ["x"] },',
            "  run: async ({ x }) => x + 1,",
            "});",
        ]
    if broken:
        parts += ["", "export const = ;"]
    return "\n".join(parts) + "\n"


LANGS = {"python": ("agent.py", python_script), "ts": ("agent.ts", ts_script)}


def save(path: Path, text: str, *, atomic: bool) -> None:
    """Saves like an editor: in place, or to a temporary file renamed over."""
    if atomic:
        tmp = path.with_name("." + path.name + ".swp")
        tmp.write_text(text)
        os.replace(tmp, path)
    else:
        path.write_text(text)


# --- the client -----------------------------------------------------------


class Notes:
    """What the server told the client besides results."""

    def __init__(self) -> None:
        self.list_changed = 0
        self.logs: list[types.LoggingMessageNotificationParams] = []

    async def on_message(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.list_changed += 1

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def error_since(self, i: int):
        """A condition: an error log arrived after the first i logs."""

        async def pred() -> bool:
            return any(log.level == "error" for log in self.logs[i:])

        return pred

    def list_changed_since(self, count: int):
        """A condition: more than count list_changed notifications arrived."""

        async def pred() -> bool:
            return self.list_changed > count

        return pred


@asynccontextmanager
async def session(notes: Notes, *args: str, env: dict[str, str] | None = None):
    params = StdioServerParameters(command=FLW, args=["mcp", *args], env=env or dict(os.environ))
    log = Path(os.environ.get("FLW_TEST_LOG", os.devnull))
    with open(log, "a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, logging_callback=notes.on_log, message_handler=notes.on_message) as s,
        ):
            await s.initialize()
            yield s


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def flw_pid(marker: str) -> int:
    """The pid of the `flw mcp` this test started (a child of pytest)."""
    for pid in children(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"mcp" in cmd and any(marker.encode() in part for part in cmd):
            return pid
    raise AssertionError("flw mcp not found among the test's children")


async def wait_for(pred, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await pred():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.02)
    return time.monotonic() - start


async def version_is(s: ClientSession, want: str) -> bool:
    r = await s.call_tool("version", {})
    assert not r.is_error, text_of(r)
    return text_of(r) == want


# --- the tests ------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "mode"), [("python", "isolated"), ("python", "shared"), ("ts", "isolated"), ("ts", "shared")]
)
async def test_ten_rewrites_under_load_fail_no_call_and_leak_no_process(tmp_path: Path, lang: str, mode: str):
    name, script = LANGS[lang]
    path = tmp_path / name
    path.write_text(script(1))
    cfg = tmp_path / "flw.toml"
    cfg.write_text(f'[pools.agent]\nscript = "{name}"\nmode = "{mode}"\ninstances = 2\nreload_drain = "20s"\n')
    # (version, added, upper, broken, atomic save)
    edits = [
        (2, False, False, False, False),  # a plain change
        (3, True, False, False, True),  # a tool added
        (4, True, False, False, False),
        (5, True, True, False, True),  # echo's schema changes
        (6, True, True, True, False),  # a broken edit: v5 keeps serving
        (7, True, True, False, True),  # the fix
        (8, False, True, False, False),  # a tool removed
        (9, False, True, False, True),
        (10, False, False, False, False),  # the schema changes back
        (11, False, False, False, True),
    ]
    notes = Notes()
    async with session(notes, "--config", str(cfg)) as s:
        await wait_for(lambda: version_is(s, "v1"), 30, "v1")
        flw = flw_pid(str(cfg))
        first_workers = set(workers(flw))
        seen_workers = set(first_workers)
        assert len(first_workers) == 2

        stop = anyio.Event()
        ok_calls = 0
        failures: list[str] = []
        added_failures: list[str] = []
        added_ok = 0

        async def load(k: int) -> None:
            nonlocal ok_calls
            last = 0
            i = 0
            while not stop.is_set():
                i += 1
                text = f"{k}-{i}"
                r = await s.call_tool("echo", {"text": text})
                got = text_of(r)
                if r.is_error:
                    failures.append(got)
                    continue
                n = int(got.split(":", 1)[0].lstrip("vV"))
                if got.split(":", 1)[1] != text or n < last:
                    failures.append(f"loop {k} got {got!r} for {text!r} after v{last}")
                last = n
                ok_calls += 1

        async def call_added() -> None:
            nonlocal added_ok
            while not stop.is_set():
                try:
                    r = await s.call_tool("added", {"x": 1})
                except Exception as e:  # unknown tool: a JSON-RPC error
                    added_failures.append(str(e))
                    await anyio.sleep(0.01)
                    continue
                if r.is_error:
                    added_failures.append(text_of(r))
                elif text_of(r) == "2":
                    added_ok += 1
                else:
                    failures.append(f"added(1) gave {text_of(r)!r}")

        swap_times = []
        async with anyio.create_task_group() as tg:
            for k in range(8):
                tg.start_soon(load, k)
            tg.start_soon(call_added)
            await anyio.sleep(0.3)
            for n, added, upper, broken, atomic in edits:
                before_logs = len(notes.logs)
                before_changed = notes.list_changed
                save(path, script(n, added=added, upper=upper, broken=broken), atomic=atomic)
                saved = time.monotonic()
                if broken:
                    await wait_for(
                        notes.error_since(before_logs),
                        60,
                        "the reload failure as a log notification",
                    )
                    error = next(log for log in notes.logs[before_logs:] if log.level == "error")
                    assert "generation" in str(error.data) and "keeps serving" in str(error.data), error.data
                    assert ("SyntaxError" if lang == "python" else "rror") in str(error.data), error.data
                    assert await version_is(s, "v5")
                    continue
                await wait_for(lambda n=n: version_is(s, f"v{n}"), 60, f"v{n} to serve")
                swap_times.append(time.monotonic() - saved)
                seen_workers |= set(workers(flw))
                if n in (3, 5, 8, 10):  # the tools changed
                    await wait_for(notes.list_changed_since(before_changed), 10, f"tools/list_changed after v{n}")
                    tools = {t.name: t for t in (await s.list_tools()).tools}
                    assert ("added" in tools) == added
                    assert ("upper" in tools["echo"].input_schema["properties"]) == upper
                await anyio.sleep(0.2)
            stop.set()

        assert failures == [], failures[:5]
        assert ok_calls > 100, ok_calls
        assert added_ok > 0
        assert all("added" in f or "unknown" in f.lower() for f in added_failures), added_failures[:3]
        # A log line for each reload that worked, one for the one that did not.
        infos = [log for log in notes.logs if log.level == "info" and "reloaded" in str(log.data)]
        assert len(infos) >= 9, [str(log.data) for log in notes.logs]

        # Only the last generation's workers are left; every other worker and its group is gone.
        def settled() -> bool:
            return len(workers(flw)) == 2

        wait_until(settled, 30, "the old generations to exit")
        last = set(workers(flw))
        assert last.isdisjoint(first_workers)
        for pid in seen_workers - last:
            wait_until(lambda pid=pid: not alive(pid) and not group_members(pid), 10, f"worker {pid} to be gone")
        print(f"{lang}/{mode}: {ok_calls} calls, swap times {[round(t, 2) for t in swap_times]}")


async def _true(value: bool) -> bool:
    return value


async def test_in_flight_calls_drain_then_are_superseded_and_queued_calls_move(tmp_path: Path):
    path = tmp_path / "agent.py"
    path.write_text(python_script(1))
    cfg = tmp_path / "flw.toml"
    cfg.write_text('[pools.agent]\nscript = "agent.py"\ninstances = 3\nreload_drain = "5s"\nqueue = 100\n')
    notes = Notes()
    async with session(notes, "--config", str(cfg)) as s:
        await wait_for(lambda: version_is(s, "v1"), 30, "v1")
        results: dict[str, str] = {}

        async def call(key: str, tool: str, args: dict) -> None:
            r = await s.call_tool(tool, args)
            results[key] = ("error: " if r.is_error else "") + text_of(r)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "short", "nap", {"seconds": 3.0})
            tg.start_soon(call, "long", "nap", {"seconds": 60})
            tg.start_soon(call, "busy", "nap", {"seconds": 3.0})
            await anyio.sleep(0.5)  # all three workers are busy now
            tg.start_soon(call, "queued", "echo", {"text": "q"})
            await anyio.sleep(0.2)
            saved = time.monotonic()
            path.write_text(python_script(2))
        took = time.monotonic() - saved

    assert results["short"] == "v1 slept"  # finished within the drain time, on the old code
    assert results["busy"] == "v1 slept"
    assert results["queued"] == "v2:q"  # queued at swap time: served by the new generation
    assert results["long"].startswith("error: superseded:"), results["long"]
    assert "reload_drain" in results["long"]
    assert took < 30


async def test_ignored_files_do_not_reload_and_imported_helpers_do(tmp_path: Path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "lib" / "helper.py").write_text("WORD = 'one'\n")
    path = tmp_path / "agent.py"
    path.write_text(
        "from lib.helper import WORD\n" + python_script(1).replace('return f"v1:{text}"', 'return f"v1:{text}:{WORD}"')
    )
    # One worker, so that the pid tells whether it was replaced (with two,
    # the first call may land on the second while the first still starts).
    config = tmp_path / "flw.toml"
    config.write_text('[pools.agent]\nscript = "agent.py"\ninstances = 1\n')
    notes = Notes()
    async with session(notes, "--config", str(config)) as s:
        await wait_for(lambda: version_is(s, "v1"), 30, "v1")
        pid_before = text_of(await s.call_tool("pid", {}))
        (tmp_path / "notes.txt").write_text("not code")
        (tmp_path / "node_modules" / "x").mkdir(parents=True)
        (tmp_path / "node_modules" / "x" / "index.js").write_text("1")
        (tmp_path / "__pycache__").mkdir(exist_ok=True)
        (tmp_path / "__pycache__" / "y.py").write_text("1")
        (tmp_path / ".agent.py.swp").write_text("1")
        await anyio.sleep(1.5)
        assert notes.logs == [], [str(log.data) for log in notes.logs]
        assert text_of(await s.call_tool("pid", {})) == pid_before
        (tmp_path / "lib" / "helper.py").write_text("WORD = 'two'\n")

        async def two() -> bool:
            return text_of(await s.call_tool("echo", {"text": "x"})) == "v1:x:two"

        await wait_for(two, 30, "the helper's change to be served")

        # A folder removed and made again (a branch switch) is watched again.
        remove_tree(tmp_path / "lib")
        await anyio.sleep(0.5)
        (tmp_path / "lib").mkdir()
        (tmp_path / "lib" / "__init__.py").write_text("")
        (tmp_path / "lib" / "helper.py").write_text("WORD = 'three'\n")
        await wait_for(word_is(s, "three"), 30, "the re-made folder's helper to be served")
        (tmp_path / "lib" / "helper.py").write_text("WORD = 'four'\n")
        await wait_for(word_is(s, "four"), 30, "a change in the re-made folder to be served")


def remove_tree(path: Path) -> None:
    """shutil.rmtree, again when an entry went away under it: flw removes
    the pyc of a removed .py while the tree is being removed."""
    for _ in range(10):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            continue
    shutil.rmtree(path)


def word_is(s: ClientSession, word: str):
    """A condition: echo shows the helper's WORD."""

    async def pred() -> bool:
        r = await s.call_tool("echo", {"text": "x"})
        return text_of(r) == f"v1:x:{word}"

    return pred


async def test_flw_reload_and_sighup_reload_a_server_that_does_not_watch(tmp_path: Path):
    path = tmp_path / "agent.py"
    path.write_text(python_script(1))
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "run"))
    notes = Notes()
    async with session(notes, "--no-watch", str(path), env=env) as s:
        await wait_for(lambda: version_is(s, "v1"), 30, "v1")
        # A reload would replace the workers. (Which version answers says
        # nothing here: a worker still starting when the file is saved
        # loads the new one.)
        server = flw_pid(str(path))
        before = set(workers(server))
        path.write_text(python_script(2))
        await anyio.sleep(1.0)
        assert set(workers(server)) == before, "--no-watch: a save alone does not reload"

        other = tmp_path / "other.py"
        other.write_text(python_script(9))
        r = run_flw("reload", str(other), env=env)
        assert r.returncode == 1 and "no flw server" in r.stderr and "other.py" in r.stderr, r.stderr

        r = run_flw("reload", str(path), env=env)
        assert r.returncode == 0, r.stderr
        assert "reloading flw mcp (pid" in r.stdout and "agent.py" in r.stdout, r.stdout
        await wait_for(lambda: version_is(s, "v2"), 30, "v2 after flw reload")

        path.write_text(python_script(3))
        os.kill(flw_pid(str(path)), signal.SIGHUP)
        await wait_for(lambda: version_is(s, "v3"), 30, "v3 after SIGHUP")
    # The server removed its registration when it exited.
    r = run_flw("reload", env=env)
    assert r.returncode == 1 and "no flw server" in r.stderr, r.stderr


async def test_a_script_broken_at_start_serves_once_a_save_fixes_it(tmp_path: Path):
    path = tmp_path / "agent.py"
    path.write_text(python_script(1, broken=True))
    notes = Notes()
    env = dict(os.environ, FLW_NO_MANIFEST_CACHE="1")
    async with session(notes, str(path), env=env) as s:
        r = await s.call_tool("version", {})
        assert r.is_error and "SyntaxError" in text_of(r), text_of(r)
        path.write_text(python_script(2))
        await wait_for(lambda: _true(notes.list_changed > 0), 30, "tools/list_changed after the fix")
        assert await version_is(s, "v2")


def test_shutdown_cuts_the_drain_of_a_replaced_generation_short(tmp_path: Path):
    path = tmp_path / "agent.py"
    path.write_text(python_script(1))
    cfg = tmp_path / "flw.toml"
    cfg.write_text('[pools.agent]\nscript = "agent.py"\ninstances = 1\nreload_drain = "60s"\n')
    client = McpPipe("--drain", "1s", "--config", str(cfg))
    try:
        client.call(1, "version", {})
        assert client.reply(1, 30)["result"]["content"][0]["text"] == "v1"
        client.call(2, "nap", {"seconds": 120})
        time.sleep(0.5)
        path.write_text(python_script(2))
        for i in range(100, 400):
            client.call(i, "version", {})
            if client.reply(i, 30)["result"]["content"][0]["text"] == "v2":
                break
            time.sleep(0.05)
        else:
            pytest.fail("v2 never served")
        started = time.monotonic()
        client.close()  # the host leaves: flw shuts down with --drain 1s
        took = time.monotonic() - started
    finally:
        if client.proc.poll() is None:
            client.proc.kill()
    assert took < 10, f"flw took {took:.1f}s to exit: the 60 s reload_drain was not cut short"
