"""The examples: the README's hello commands, and the model examples
(research-agent, cross-language, runaway, the notebook) against the loopback
OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import nbclient
import nbformat
from openai_server import OpenAIServer

from conftest import FLW, ROOT, McpPipe, StderrReader, alive, cmdline, flw_on_path, needs_node, run_flw, wait_until

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


# --- the model examples, against the loopback OpenAI-compatible server -----

EXAMPLES = ROOT / "examples"


def loopback(example: str) -> OpenAIServer:
    rules = json.loads((EXAMPLES / example / "loopback.json").read_text())
    return OpenAIServer(rules=rules).start()


def run_against_loopback(
    example: str, target: str, flow: str, store: str
) -> tuple[subprocess.CompletedProcess[str], OpenAIServer]:
    """`flw run` of a flow of an example, its model played by the loopback
    server with the example's loopback.json; gives the server for its events."""
    server = loopback(example)
    try:
        r = run_flw("run", str(EXAMPLES / example / target), flow, "--json", store, env=server.env())
    finally:
        server.stop()
    return r, server


def test_research_agent_searches_the_notes_then_streams_its_answer():
    question = '{"question": "How does flw cancel a call?"}'
    r, server = run_against_loopback("research-agent", "agent.py", "research", question)
    assert r.returncode == 0, r.stderr
    store = json.loads(r.stdout)
    assert store["searches"] == ["cancel call process group"]
    assert [note["file"] for note in store["notes"]][0] == "cancellation.md"
    assert store["answer"].startswith("flw runs each worker in its own process group.")
    assert store["answer"] in r.stderr  # streamed into the live view
    decide, decide_again, answer = server.requests()
    assert decide["response_format"] == {"type": "json_object"} and decide["stream"] is False
    assert "Notes so far:\n(none)" in decide["messages"][-1]["content"]
    assert "[cancellation.md]" in decide_again["messages"][-1]["content"]
    assert answer["stream"] is True and answer["temperature"] == 0.2


def test_research_agent_search_tool_ranks_the_notes():
    r = run_flw(
        "call", str(EXAMPLES / "research-agent" / "agent.py"), "search_notes", "--json", '{"query": "hot swap"}'
    )
    assert r.returncode == 0, r.stderr
    assert [hit["file"] for hit in json.loads(r.stdout)][0] == "hot-swap.md"


@needs_node
def test_cross_language_hands_off_from_python_to_typescript():
    r, server = run_against_loopback("cross-language", "flw.toml", "handoff", '{"topic": "process groups"}')
    assert r.returncode == 0, r.stderr
    store = json.loads(r.stdout)
    assert store["by"] == ["python", "typescript"]
    assert store["draft"].startswith("A process group is a set of processes")
    assert store["final"] == "One signal to the group stops the worker and everything it started."
    draft, polish = server.requests()
    assert "process groups" in draft["messages"][-1]["content"]
    assert store["draft"] in polish["messages"][-1]["content"]  # the TypeScript node saw the Python draft


RUNAWAY = (
    "python3 tests/openai_server.py --rules examples/runaway/loopback.json -- "
    'flw call examples/runaway/agent.py runaway --json \'{"topic": "cats"}\''
)
CLOSED = re.compile(r"request (\d): the client closed the connection after (\d+) of (\d+) tokens")


def test_runaway_readme_command_stops_model_and_helper_on_ctrl_c(tmp_path):
    """The README's command, as written, and a Ctrl-C: SIGINT to its
    foreground process group, as a terminal sends it."""
    readme = (EXAMPLES / "runaway" / "README.md").read_text()
    assert f"```sh\n{RUNAWAY}\n```" in readme
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PATH"] = flw_on_path(tmp_path / "bin")
    proc = subprocess.Popen(["bash", "-c", RUNAWAY], cwd=ROOT, env=env, stderr=subprocess.PIPE, start_new_session=True)
    err = StderrReader(proc)
    wait_until(lambda: err.seen("one token at a time. Essays"), 60, "the essay to stream")
    [helper] = [int(m) for m in re.findall(r"helper process (\d+) started", err.text)]
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    log = err.join(10)
    assert "was cancelled" in log
    closed = {int(m[0]): (int(m[1]), int(m[2])) for m in CLOSED.findall(log)}
    assert set(closed) == {1, 2}, log  # the tool's stream and the helper's
    assert all(0 < sent < total for sent, total in closed.values()), closed
    assert not alive(helper)


def test_runaway_mcp_cancel_stops_model_and_helper():
    server = loopback("runaway")
    mcp = McpPipe(str(EXAMPLES / "runaway" / "agent.py"), env=server.env())
    try:
        topic = f"mcp-cancel-{os.getpid()}"
        mcp.call(1, "runaway", {"topic": topic})
        server.wait_for(lambda events: len([e for e in events if e["event"] == "request"]) == 2, timeout=60)
        [helper] = [pid for pid in all_pids() if topic in cmdline(pid)]
        mcp.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}})
        server.wait_for(lambda events: len([e for e in events if e["event"] == "client_closed"]) == 2, 10)
        assert not server.of("done")
        wait_until(lambda: not alive(helper), 10, "the helper process to die")
    finally:
        mcp.close()
        server.stop()


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def test_notebook_runs_headless():
    """examples/notebook/prompt-loop.ipynb, every cell, in a real kernel;
    it starts its own loopback server and serves the module with `flw mcp`."""
    path = EXAMPLES / "notebook" / "prompt-loop.ipynb"
    notebook = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["FLW_BIN"] = FLW
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
    )
    assert "flw kills the worker's process group on a cancel (cancellation.md)." in outputs
    assert "['research', 'search_notes']" in outputs
