"""The commands the README shows, run as written against the examples."""

from __future__ import annotations

import json

from conftest import ROOT, run_flw

HELLO = str(ROOT / "examples" / "hello-python" / "agent.py")


def test_readme_quick_start_call_shows_progress_and_prints_done():
    r = run_flw("call", HELLO, "slow", "--json", '{"seconds": 1, "steps": 5}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "done"
    assert "progress 5/5: step 5" in r.stderr


def test_readme_echo_and_tools():
    r = run_flw("call", HELLO, "echo", "--json", '{"text": "hello"}')
    assert r.returncode == 0 and json.loads(r.stdout) == "hello"
    r = run_flw("tools", HELLO)
    assert "slow  Sleep in steps, reporting progress." in r.stdout
    assert "steps: integer = 10" in r.stdout


HELLO_TS = str(ROOT / "examples" / "hello-ts" / "agent.ts")


def test_readme_typescript_worker_call():
    r = run_flw("call", HELLO_TS, "slow", "--json", '{"seconds": 0.5, "steps": 5}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "done"
    assert "progress 5/5: step 5" in r.stderr


GRAPH = str(ROOT / "examples" / "hello-graph" / "agent.py")


def test_readme_flow_run_prints_the_final_store():
    r = run_flw("run", GRAPH, "agent", "--json", '{"question": "why"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"question": "why", "notes": ["note 0", "note 1"], "answer": "note 0 / note 1"}
    assert "done     agent/decide -> search" in r.stderr


def test_readme_flow_graph_is_mermaid():
    r = run_flw("graph", GRAPH, "agent")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("flowchart TD\n")
    assert 'agent__decide -- "search" --> agent__search' in r.stdout
