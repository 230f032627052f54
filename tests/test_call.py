"""`flw call` and `flw tools` through the real binary and real workers."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import FIXTURES, FLW, RAW_WORKER, TOOLS, run_flw


def call(tool: str, args: dict | None = None, *extra: str, script=TOOLS, **kw):
    return run_flw("call", str(script), tool, "--json", json.dumps(args or {}), *extra, **kw)


def test_call_prints_the_result_as_json_on_stdout():
    r = call("echo", {"text": 'héllo "world"'})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == 'héllo "world"'


def test_tools_lists_names_and_parameters():
    r = run_flw("tools", str(TOOLS))
    assert r.returncode == 0, r.stderr
    assert "echo  Return the text unchanged." in r.stdout
    assert "text: string (required)" in r.stdout
    r = run_flw("tools", str(TOOLS), "--json")
    tools = {t["name"]: t for t in json.loads(r.stdout)}
    assert tools["aecho"]["input_schema"]["properties"]["delay"] == {"type": "number", "default": 0.0}


def test_invalid_arguments_are_refused_before_the_worker_sees_them():
    r = call("echo", {"text": 5})
    assert r.returncode == 1
    assert 'invalid_arguments: invalid arguments for tool echo: /text: 5 is not of type "string"' in r.stderr


def test_unknown_tool_lists_the_tools():
    r = call("nope")
    assert r.returncode == 1
    assert 'unknown_tool: no tool named "nope"; the tools are: echo, aecho' in r.stderr


def test_tool_exception_is_reported_with_its_traceback():
    r = call("fail", {"message": "bad url"})
    assert r.returncode == 1
    assert "error: tool_error: ValueError: bad url" in r.stderr
    assert "Traceback (most recent call last)" in r.stderr
    assert "raise ValueError(message)" in r.stderr


def test_print_fd1_and_child_stdout_do_not_corrupt_the_protocol():
    r = call("noisy", {"text": "clean"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "clean"
    for noise in ("noise from print", "noise from fd 1", "noise from a child process"):
        assert noise in r.stderr, f"{noise!r} should be logged on stderr"
        assert noise not in r.stdout


def test_progress_is_shown_on_stderr():
    r = call("steps", {"count": 3})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "3 steps"
    assert "progress 1/3: step 1" in r.stderr and "progress 3/3: step 3" in r.stderr


def test_crash_mid_call_reports_status_and_stderr_tail():
    r = call("crash", {"code": 7})
    assert r.returncode == 1
    assert "error: worker_crashed: worker tools.py#1" in r.stderr
    assert "ended with exit status 7 while it hosted this call" in r.stderr
    assert "last lines of its stderr:\n  about to crash" in r.stderr


def test_syntax_error_shows_the_error_and_traceback(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("from flw import tool\n\n@tool\ndef f(x: int) -> int:\n    return (x\n")
    r = run_flw("call", str(bad), "f", "--json", '{"x": 1}')
    assert r.returncode == 2
    assert "worker broken.py#1 failed to start" in r.stderr
    assert "exited with exit status 1 before its handshake" in r.stderr
    assert "SyntaxError" in r.stderr and "broken.py" in r.stderr


def test_missing_script_and_bad_json_are_usage_errors(tmp_path):
    r = run_flw("call", str(tmp_path / "none.py"), "echo")
    assert r.returncode == 2 and "none.py not found" in r.stderr
    r = run_flw("call", str(TOOLS), "echo", "--json", "[1]")
    assert r.returncode == 2 and "--json must be a JSON object" in r.stderr
    r = run_flw("call", str(TOOLS), "echo", "--json", "{")
    assert r.returncode == 2 and "--json is not valid JSON" in r.stderr


def raw(mode: str, *extra: str):
    env = dict(os.environ, RAW_MODE=mode)
    return run_flw(
        "call",
        str(FIXTURES / "tools.py"),
        "echo",
        "--python",
        str(RAW_WORKER),
        "--env",
        "RAW_MODE",
        *extra,
        env=env,
        timeout=60,
    )


def test_garbage_line_from_a_worker_fails_the_call_with_protocol_error():
    r = raw("garbage")
    assert r.returncode == 1
    assert "protocol_error: worker tools.py#1 broke the protocol: sent a bad line: line is not JSON" in r.stderr
    assert "this is not json" in r.stderr


def test_over_long_line_from_a_worker_names_the_limit():
    r = raw("overlong")
    assert r.returncode == 1
    assert "protocol_error: worker tools.py#1 broke the protocol: sent a line over the 16777216-byte limit" in r.stderr


def test_handshake_timeout_is_a_clear_error():
    r = raw("silent", "--handshake-timeout", "1s")
    assert r.returncode == 2
    assert "sent no hello within the handshake timeout of 1s" in r.stderr


def test_protocol_version_mismatch_names_both_sides():
    r = raw("version")
    assert r.returncode == 2
    assert "no common protocol version" in r.stderr and "[99]" in r.stderr and "[1]" in r.stderr


def test_deadline_times_the_call_out_and_kills_the_worker():
    r = call("sleepy", {"seconds": 30}, "--timeout", "300ms", "--cancel-grace", "0s")
    assert r.returncode == 1
    assert "error: timeout: call 1 to sleepy timed out after 300ms" in r.stderr
    assert "process group were killed" in r.stderr


def test_durations_over_a_year_are_refused():
    # Regression: a huge --timeout overflowed Instant arithmetic and panicked.
    r = call("echo", {"text": "x"}, "--timeout", "10000000000000000000s")
    assert r.returncode == 2
    assert "longer than a year" in r.stderr
    assert "panicked" not in r.stderr


def test_tools_output_to_a_closed_pipe_is_not_a_crash():
    proc = subprocess.Popen([FLW, "tools", str(TOOLS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `flw tools ... | head -0`: the reader is gone
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"panicked" not in err
