"""Every shell command a README shows is run by a test.

The commands are the lines of the `sh` code blocks in the repository's
README files. Each runs here as written, from the repository's root (or the
folder a `cd` line of its block names), with the binary under test first on
PATH as `flw`. Two things are read differently, and said so here:
`cargo run --release --` stands for `flw` (a release build takes minutes;
the binary under test is the same code), and the servers (`flw mcp`,
`flw serve`) are started, used and stopped. A command that cannot run
inside this suite (the suite itself, a release build, a Ctrl-C at a
terminal) is listed in RUN_ELSEWHERE with the file that runs it, which must
contain the given text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, flw_on_path, wait_until

# command -> (file that runs it, text that file must contain)
RUN_ELSEWHERE: dict[str, tuple[str, str]] = {
    "./scripts/test.sh": (".ci/run", "exec ./scripts/test.sh"),
    "python -m pytest -q": ("scripts/test.sh", "(cd workers-python && ../.venv/bin/python -m pytest -q)"),
    "ruff check . && ruff format --check .": (
        "scripts/test.sh",
        "(cd workers-python && ../.venv/bin/ruff check . && ../.venv/bin/ruff format --check .)",
    ),
    "npm ci": ("scripts/test.sh", "(cd workers-ts && npm ci"),
    "npm test": ("scripts/test.sh", "npm test)"),
    "npm run check": ("workers-ts/package.json", '"test": "npm run build && npm run check'),  # npm test runs it
    "tests/conformance/run.sh": ("tests/test_conformance.py", "run.sh"),
    "FLW_BIN=target/release/flw tests/conformance/run.sh": ("tests/test_conformance.py", "FLW_BIN"),
    "CONFORMANCE_KEEP=1 tests/conformance/run.sh": ("tests/conformance/run.sh", "CONFORMANCE_KEEP"),
    "npx conformance list --server --spec-version 2026-07-28": ("tests/conformance/run.sh", "--spec-version"),
    "npx conformance server --url http://127.0.0.1:8077/mcp --spec-version 2026-07-28 "
    "--scenario tools-call-with-progress --verbose": ("tests/conformance/run.sh", "server --url"),
    "npx conformance server --url http://127.0.0.1:8077/mcp --suite all --spec-version 2025-11-25 -o results": (
        "tests/conformance/run.sh",
        "--suite all",
    ),
    # The fuzz targets need a nightly toolchain and minutes of build.
    "fuzz/smoke.sh": ("scripts/test.sh", "fuzz/smoke.sh"),
    "cargo +nightly fuzz run protocol_line -- -max_total_time=60": ("fuzz/smoke.sh", "cargo +nightly fuzz run"),
    # Ctrl-C at a terminal: tests/test_examples.py sends the SIGINT.
    "python3 tests/openai_server.py --rules examples/runaway/loopback.json -- "
    'flw call examples/runaway/agent.py runaway --json \'{"topic": "cats"}\'': (
        "tests/test_examples.py",
        "flw call examples/runaway/agent.py runaway --json",  # RUNAWAY there, checked against the README
    ),
}

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def readme_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [ROOT / name for name in out.stdout.split()]


def shell_blocks(path: Path) -> list[list[str]]:
    """The `sh` blocks of a markdown file, as lists of commands."""
    return shell_blocks_of(path.read_text(encoding="utf-8"))


def shell_blocks_of(markdown: str) -> list[list[str]]:
    """The `sh` blocks of markdown text, as lists of commands."""
    blocks: list[list[str]] = []
    lines: list[str] | None = None  # the lines of the open block, if it is a shell block
    inside = False
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        if fence and not inside:
            inside = True
            lines = [] if fence.group(2) in ("sh", "bash", "shell") else None
        elif fence:
            inside = False
            if lines is not None:
                blocks.append(commands_of(lines))
        elif lines is not None:
            lines.append(line)
    return blocks


def commands_of(lines: list[str]) -> list[str]:
    """Commands of a block: comments dropped, continued lines joined."""
    commands: list[str] = []
    pending = ""
    for line in lines:
        text = re.sub(r"(^|\s+)#.*$", "", line).strip()
        if not text:
            continue
        if text.endswith("\\"):
            pending += text[:-1].strip() + " "
            continue
        commands.append(pending + text)
        pending = ""
    return commands


def readme_commands() -> list[tuple[str, str, str]]:
    """(README, working folder, command) for every command of every README."""
    found = []
    for path in readme_files():
        for block in shell_blocks(path):
            cwd = "."
            for command in block:
                if command.startswith("cd "):
                    cwd = command[3:].strip()
                    continue
                found.append((str(path.relative_to(ROOT)), cwd, command))
    return found


COMMANDS = readme_commands()
# The curl commands run as one block, in order (test_the_json_api_curl_commands_run).
HERE_COMMANDS = [c for c in COMMANDS if c[2] not in RUN_ELSEWHERE and not c[2].startswith("curl ")]


def test_the_readmes_show_commands_and_each_is_run_somewhere():
    assert len(COMMANDS) > 10, COMMANDS
    assert any(c[2].startswith("cargo run --release -- call examples/hello-python") for c in COMMANDS)
    for command, (file, text) in RUN_ELSEWHERE.items():
        assert command in {c[2] for c in COMMANDS}, f"RUN_ELSEWHERE lists a command no README shows: {command}"
        assert text in (ROOT / file).read_text(encoding="utf-8"), f"{file} does not run {command!r}"


def test_the_readme_opens_with_two_commands_and_the_build_shows_its_progress():
    """A new user's first screen: build and call, then the whole suite. The
    first build takes minutes, so cargo must not be told to keep quiet."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = readme.split("\n## ", 1)[0]
    commands = [c for block in shell_blocks_of(first_screen) for c in block]
    assert len(commands) == 2, commands
    build, suite = commands
    assert build.startswith("cargo run --release -- call "), build
    cargo_flags = build.split(" -- ", 1)[0].split()
    assert "-q" not in cargo_flags and "--quiet" not in cargo_flags, build
    assert suite == "./scripts/test.sh"


@pytest.fixture(scope="module")
def path_with_flw(tmp_path_factory) -> str:
    return flw_on_path(tmp_path_factory.mktemp("bin"))


def shell(command: str, cwd: Path, path: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PATH"] = path
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, start_new_session=True, **kw)


@pytest.mark.parametrize(("readme", "cwd", "command"), HERE_COMMANDS, ids=[f"{c[0]}: {c[2]}" for c in HERE_COMMANDS])
def test_readme_command_runs(readme, cwd, command, path_with_flw):
    command = command.replace("cargo run --release -- ", "flw ", 1)
    folder = ROOT / cwd
    if command.startswith("flw mcp "):
        return run_mcp(command, folder, path_with_flw)
    if command.startswith("flw serve "):
        return run_serve(command, folder, path_with_flw)
    proc = shell(command, folder, path_with_flw, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{readme}: `{command}` exited {proc.returncode}\n{err}"
    assert out.strip() or err.strip(), f"{readme}: `{command}` printed nothing"


def run_mcp(command: str, folder: Path, path: str) -> None:
    """An MCP server on stdio: initialize, list its tools, leave."""
    proc = shell(command, folder, path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for message in (
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params()},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ):
            proc.stdin.write((json.dumps(message) + "\n").encode())
        proc.stdin.flush()
        replies = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert replies[0]["result"]["serverInfo"]["name"]
        assert replies[1]["result"]["tools"], replies[1]
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def initialize_params() -> dict:
    return {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "readme", "version": "1"}}


def run_serve(command: str, folder: Path, path: str) -> None:
    """`flw serve` on its default port: ready, lists the tools, drains on SIGTERM."""
    proc = shell(command, folder, path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: ready("http://127.0.0.1:8077/readyz") or proc.poll() is not None, 60, "flw serve")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with urllib.request.urlopen("http://127.0.0.1:8077/v1/tools", timeout=10) as r:
            assert json.load(r)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def curl_block() -> list[str]:
    return [c[2] for c in COMMANDS if c[0] == "README.md" and c[2].startswith("curl ")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_json_api_curl_commands_run(path_with_flw):
    """The README's curl block, in order, against `flw serve` on the hello
    example; `r_…` stands for the id the async call printed."""
    commands = curl_block()
    assert len(commands) >= 6, commands
    server = shell(
        "flw serve examples/hello-python/agent.py",
        ROOT,
        path_with_flw,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: ready("http://127.0.0.1:8077/readyz"), 60, "flw serve")
        run_id = None
        for command in commands:
            if "r_…" in command:
                assert run_id, "no run id printed before a command that needs one"
                command = command.replace("r_…", run_id)
            out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, f"`{command}`: {out.stderr}"
            assert out.stdout.strip(), f"`{command}` printed nothing"
            if "async=true" in command:
                run_id = json.loads(out.stdout)["id"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
