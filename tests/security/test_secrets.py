"""No secret in any file flw writes or any log line it prints, and every
file it writes private: `call`, `mcp`, `serve` and `run` under a fresh HOME,
with an API key given through `--env` and a bearer token, at debug level
(issue: `--env OPENAI_API_KEY=...` was written into the manifest cache,
mode 0644)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from conftest import FIXTURES, FLW, TOOLS, McpPipe
from serving import SERVE_TOOLS, serve

SECRET = "sk-secret-123456"
TOKEN = "tok-very-secret-654321"


def home_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "FLW_TOKEN")}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        TMPDIR=str(tmp_path / "tmp"),
        FLW_LOG="debug",
    )
    for d in ("home", "run", "tmp"):
        (tmp_path / d).mkdir(mode=0o700)
    return env


def flw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLW, *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def written_files(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if not p.is_symlink()]


def test_no_secret_in_files_or_debug_logs_and_every_file_private(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    logs: list[str] = []

    # flw call
    r = flw(env, "call", str(TOOLS), "echo", "--json", '{"text": "x"}', "--env", f"OPENAI_API_KEY={SECRET}")
    assert r.returncode == 0, r.stderr
    logs.append(r.stderr)

    # flw run
    flows = FIXTURES / "graphs" / "flows.py"
    r = flw(env, "run", str(flows), "fan_out", "--json", "{}", "--env", f"OPENAI_API_KEY={SECRET}")
    assert r.returncode == 0, r.stderr
    logs.append(r.stderr)

    # flw mcp
    client = McpPipe(str(TOOLS), "--env", f"OPENAI_API_KEY={SECRET}", env=env)
    client.list_tools(1)
    assert client.reply(1, 30)["result"]["tools"]
    client.call(2, "echo", {"text": "y"})
    assert client.reply(2, 60)["result"]["content"][0]["text"] == "y"
    client.close()

    # flw serve, with a bearer token that every request sends
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(SERVE_TOOLS, "--token-file", str(token_file), "--env", f"OPENAI_API_KEY={SECRET}", env=env) as s:
        s.wait_ready()
        r = s.post("/v1/tools/echo/call", {"text": "z"}, headers=auth)
        assert r.status == 200, r.body
        assert s.post("/v1/tools/echo/call", {"text": "z"}, headers={"Authorization": "Bearer wrong"}).status == 401
        mcp = {**auth, "Accept": "application/json, text/event-stream"}
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        assert s.post("/mcp", init, headers=mcp).status == 200
        # flw ps reads the registry and talks to the server with the token.
        ps = flw({**env, "FLW_TOKEN": TOKEN}, "ps")
        assert ps.returncode == 0, ps.stderr
        logs.append(ps.stderr)
    logs.append(s.stderr)

    for text in logs:
        assert SECRET not in text and TOKEN not in text, text
    files = written_files(tmp_path / "home") + written_files(tmp_path / "run") + written_files(tmp_path / "tmp")
    cache = tmp_path / "home" / ".cache" / "flw"
    assert (cache / "manifests").is_dir(), "the manifest cache was not written: the test proves nothing"
    for p in files:
        if p.is_file():
            data = p.read_bytes()
            assert SECRET.encode() not in data and TOKEN.encode() not in data, p
    # Private: the cache folder and the registry are 0700, what flw writes
    # in them 0600 (Python's own __pycache__ inside the private folder aside).
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "run" / "flw").stat().st_mode) == 0o700
    for p in files:
        if "__pycache__" in p.parts or not (p.is_relative_to(cache) or p.is_relative_to(tmp_path / "run")):
            continue
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, f"{p} is {mode:o}"


def test_a_config_printed_at_debug_shows_no_env_value(tmp_path: Path) -> None:
    """A pool's env from flw.toml: at trace level too, no value in a log line."""
    env = home_env(tmp_path)
    env["FLW_LOG"] = "trace"
    flows = FIXTURES / "graphs" / "flows.py"
    (tmp_path / "flw.toml").write_text(f'[pools.flows]\nscript = "{flows}"\nenv = {{ OPENAI_API_KEY = "{SECRET}" }}\n')
    r = flw(env, "run", str(tmp_path / "flw.toml"), "fan_out", "--json", json.dumps({}))
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stderr
