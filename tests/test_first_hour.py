"""What a new user meets in the first hour: the messages of the real `flw`
binary when a command is given something wrong, and the shape of what it
prints. Each test here stands for a rough edge found in a trial from a
fresh clone."""

from __future__ import annotations

from conftest import run_flw, wait_until
from serving import env_without_token, serve


def test_a_missing_config_file_names_the_os_error_once(tmp_path):
    r = run_flw("serve", "--config", str(tmp_path / "nothere.toml"))
    assert r.returncode == 2
    assert f"cannot read the config file {tmp_path / 'nothere.toml'}" in r.stderr, r.stderr
    assert r.stderr.count("No such file or directory") == 1, r.stderr


def test_a_folder_given_as_the_script_names_the_scripts_in_it(tmp_path):
    (tmp_path / "agent.py").write_text("")
    for command in (["tools", str(tmp_path)], ["call", str(tmp_path), "echo"]):
        r = run_flw(*command)
        assert r.returncode == 2
        assert "not found" not in r.stderr, r.stderr
        hint = f"name the script in it: {tmp_path / 'agent.py'}"
        assert f"{tmp_path} is a folder, not a worker script: {hint}" in r.stderr, r.stderr


ENV_NAMED = """
import os
from flw import tool

@tool(name=os.environ.get("TOOL_NAME", "unnamed"))
def greet(text: str) -> str:
    return os.environ.get("GREETING", "hello") + " " + text
"""


def test_tools_and_call_take_a_flw_toml_and_the_same_worker_options(tmp_path):
    (tmp_path / "agent.py").write_text(ENV_NAMED)
    config = tmp_path / "flw.toml"
    config.write_text('[pools.agent]\nscript = "agent.py"\nenv = { GREETING = "hi" }\n')
    r = run_flw("tools", str(config), "--env", "TOOL_NAME=greet_me")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("greet_me"), r.stdout
    r = run_flw("call", str(config), "greet_me", "--json", '{"text": "you"}', "--env", "TOOL_NAME=greet_me")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '"hi you"'
    r = run_flw("tools", str(tmp_path / "agent.py"), "--python", str(tmp_path / "no-python"))
    assert r.returncode == 2
    assert "no-python" in r.stderr, r.stderr


DATACLASS = '''
from dataclasses import dataclass
from flw import tool

@dataclass
class Point:
    x: int
    y: float = 0.0

@tool
def move(p: Point, name: str = "a") -> str:
    """Move a point."""
    return name
'''


def test_tools_shows_the_fields_of_a_dataclass_parameter(tmp_path):
    (tmp_path / "agent.py").write_text(DATACLASS)
    r = run_flw("tools", str(tmp_path / "agent.py"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "move  Move a point.",
        "    p: object (required)",
        "      x: integer (required)",
        "      y: number = 0.0",
        '    name: string = "a"',
    ]


INTERLEAVED = """
from flw import Context, tool

@tool
async def steps(ctx: Context, n: int) -> int:
    for i in range(n):
        await ctx.progress(i + 1, n, f"step {i + 1}")
        ctx.log(f"after step {i + 1}")
    return n
"""


def test_call_prints_log_lines_and_progress_in_the_order_the_tool_sent_them(tmp_path):
    (tmp_path / "agent.py").write_text(INTERLEAVED)
    n = 200
    r = run_flw("call", str(tmp_path / "agent.py"), "steps", "--json", f'{{"n": {n}}}')
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    where = {line.split(": ", 1)[1]: i for i, line in enumerate(lines) if line.startswith("progress ")}
    logs = {int(line.rsplit(" ", 1)[1]): i for i, line in enumerate(lines) if "INFO after step " in line}
    assert sorted(logs) == list(range(1, n + 1)), r.stderr
    # Progress may skip to its newest values when stderr is slow (a
    # skipped value is not shown at all), but what is shown keeps the order
    # the tool sent it in: step k's progress, then step k's log line.
    for step, at in logs.items():
        progress_at = where.get(f"step {step}")
        assert progress_at is None or progress_at < at, f"log of step {step} before its progress:\n{r.stderr}"


def test_a_script_that_fails_to_start_shows_its_traceback_once(tmp_path):
    (tmp_path / "agent.py").write_text('import flw\n\nraise RuntimeError("boom at import")\n')
    for command in (["call", "agent.py", "echo"], ["run", "agent.py", "flow", "--events", "plain"]):
        r = run_flw(*command, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "failed to start" in r.stderr, r.stderr
        assert r.stderr.count("RuntimeError: boom at import") == 1, r.stderr


def test_what_a_script_prints_while_it_starts_is_shown_once_it_is_up(tmp_path):
    (tmp_path / "agent.py").write_text(
        "import sys\nfrom flw import tool\n\nprint('loading at import', file=sys.stderr)\n\n\n"
        "@tool\ndef hi() -> str:\n    print('in the tool', file=sys.stderr)\n    return 'hi'\n"
    )
    r = run_flw("call", "agent.py", "hi", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.index("loading at import") < r.stderr.index("in the tool"), r.stderr


def test_an_unsupported_parameter_type_names_tool_parameter_and_type_without_sdk_frames(tmp_path):
    (tmp_path / "agent.py").write_text(
        "import socket\nfrom flw import tool\n\n\n@tool\ndef f(s: socket.socket) -> str:\n    return ''\n"
    )
    r = run_flw("tools", "agent.py", cwd=tmp_path)
    assert r.returncode == 2
    assert "tool 'f' (agent.f): parameter 's' has an unsupported type socket.socket" in r.stderr, r.stderr
    assert "_tool.py" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_ps_and_cancel_say_how_to_pass_the_token_a_server_needs(tmp_path):
    (tmp_path / "agent.py").write_text(ENV_NAMED)
    env = env_without_token(XDG_RUNTIME_DIR=str(tmp_path / "run"))
    server = serve(tmp_path / "agent.py", env=dict(env, FLW_TOKEN="0123456789abcdef0123"))
    try:
        # flw serve registers itself (for flw ps) just after it prints its address.
        wait_until(lambda: server.url in run_flw("ps", env=env).stdout, 30, "flw serve to register")
        r = run_flw("ps", env=env)
        assert r.returncode == 0, r.stderr
        assert "HTTP 401" in r.stdout and "--token-file FILE, or set FLW_TOKEN" in r.stdout, r.stdout
        r = run_flw("cancel", "r_0123", env=env)
        assert r.returncode == 1
        assert "--token-file FILE, or set FLW_TOKEN" in r.stderr, r.stderr
        r = run_flw("ps", env=dict(env, FLW_TOKEN="not the token at all"))
        assert "(the token sent is from $FLW_TOKEN)" in r.stdout, r.stdout
    finally:
        code = server.stop()
        assert code == 0, f"flw serve exited {code}:\n{''.join(server.stderr_lines)}"


def test_cancel_says_what_is_wrong_with_a_run_id(tmp_path):
    r = run_flw("cancel", "r_nothere")
    assert r.returncode == 2
    assert '"r_nothere" is not a run id: after r_, a run id has only hex digits (0-9, a-f)' in r.stderr, r.stderr


def test_a_one_character_token_is_one_character(tmp_path):
    (tmp_path / "agent.py").write_text(ENV_NAMED)
    r = run_flw("serve", str(tmp_path / "agent.py"), env=env_without_token(FLW_TOKEN="x"))
    assert r.returncode == 2
    assert "the token in $FLW_TOKEN is 1 character long: use at least 16" in r.stderr, r.stderr


def test_help_speaks_of_every_language_and_help_takes_help():
    r = run_flw("-h")
    assert r.returncode == 0
    assert "written in Python, TypeScript or JavaScript" in r.stdout, r.stdout
    r = run_flw("--help")
    assert "Write a Python file with @tool functions (or a TypeScript or JavaScript file" in r.stdout, r.stdout
    r = run_flw("help", "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: flw help [COMMAND]" in r.stdout, r.stdout
    r = run_flw("help", "call")
    assert r.returncode == 0, r.stderr
    assert "Usage: flw call [OPTIONS] <TARGET> <TOOL>" in r.stdout, r.stdout
    r = run_flw("help", "nope")
    assert r.returncode == 2
    assert 'flw has no command "nope"; the commands are: tools, call' in r.stderr, r.stderr
