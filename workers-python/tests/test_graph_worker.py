"""Graph nodes through a real worker process: the manifest in hello and every phase."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import FIXTURES, SDK_FILES, WorkerProcess, worker_env
from flw.worker._protocol import decode

GRAPH = FIXTURES / "graph_script.py"

Spawn = Callable[..., WorkerProcess]

_ids = iter(range(1, 10**6))


def next_id() -> int:
    return next(_ids)


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerProcess]:
    """One shared-mode worker for the tests that do not end it."""
    process = WorkerProcess(GRAPH, mode="shared")
    process.handshake()
    yield process
    process.close()


def outcome(messages: list[dict[str, Any]]) -> Any:
    assert messages[-1]["type"] == "result", messages[-1]
    return messages[-1]["value"]


def error(messages: list[dict[str, Any]]) -> dict[str, Any]:
    assert messages[-1]["type"] == "error", messages[-1]
    return messages[-1]


# -- the manifest ------------------------------------------------------------------


def test_hello_announces_nodes_and_flows(spawn: Spawn) -> None:
    process = spawn(GRAPH)
    hello = process.recv()
    assert list(hello) == [
        "type",
        "protocol",
        "sdk",
        "sdk_version",
        "runtime",
        "pid",
        "tools",
        "nodes",
        "flows",
    ]
    assert [t["name"] for t in hello["tools"]] == ["ping"]
    assert hello["nodes"] == [
        {"name": "decide", "kind": "node", "description": "Pick the next step."},
        {"name": "search", "kind": "node", "description": ""},
        {"name": "answer", "kind": "node", "description": ""},
        {"name": "flaky", "kind": "node", "description": "Always fails.", "fallback": True},
        {"name": "bad_action", "kind": "node", "description": ""},
        {"name": "not_json", "kind": "node", "description": ""},
        {"name": "fetch_a", "kind": "node", "description": ""},
        {"name": "fetch_b", "kind": "node", "description": ""},
        {"name": "sync_wait", "kind": "node", "description": ""},
        {"name": "async_wait", "kind": "node", "description": ""},
        {"name": "lonely", "kind": "node", "description": "A node in no flow."},
        {"name": "summarize", "kind": "batch", "description": "Summarize each file."},
        {"name": "bad_items", "kind": "batch", "description": ""},
        {"name": "Report", "kind": "node", "description": ""},
        {
            "name": "Flaky",
            "kind": "node",
            "description": "Fails its first tries, then answers; falls back when out of tries.",
            "fallback": True,
        },
    ]
    review, agent, checks = hello["flows"]
    assert review == {
        "name": "review",
        "description": "Summarize, then report.",
        "start": "summarize",
        "nodes": {"summarize": {"node": "summarize", "limit": 2}, "Report": {"node": "Report"}},
        "edges": [{"from": "summarize", "to": "Report", "action": "summarized"}],
    }
    assert agent == {
        "name": "agent",
        "description": "Searches until it has two notes, then answers.",
        "start": "decide",
        "nodes": {
            "decide": {"node": "decide"},
            "search": {"node": "search", "retries": 2, "backoff_ms": 50, "timeout_ms": 5000},
            "answer": {"node": "answer"},
            "review": {"flow": "review"},
            "fan": {"parallel": ["fetch_a", "fetch_b"], "limit": 2},
            "fetch_a": {"node": "fetch_a"},
            "fetch_b": {"node": "fetch_b"},
        },
        "edges": [
            {"from": "decide", "to": "search", "action": "search"},
            {"from": "decide", "to": "answer", "action": "answer"},
            {"from": "search", "to": "decide", "action": "default"},
            {"from": "answer", "to": "review", "action": "default"},
            {"from": "review", "to": "fan", "action": "default"},
        ],
        "max_steps": 50,
        "deadline_ms": 60000,
    }
    assert checks == {
        "name": "checks.flaky",
        "start": "flow_1",
        "nodes": {
            "flow_1": {
                "flow": {
                    "name": "flow_1",
                    "start": "Flaky",
                    "nodes": {"Flaky": {"node": "Flaky"}},
                    "edges": [],
                }
            }
        },
        "edges": [],
    }
    process.send({"type": "shutdown"})
    assert process.wait() == 0


def test_two_nodes_with_one_name_stop_the_worker_before_hello(spawn: Spawn, tmp_path: Path) -> None:
    script = tmp_path / "clash.py"
    script.write_text(
        "from flw import Flow, Node, node\n"
        "class Step(Node):\n    pass\n"
        "@node\ndef step(shared):\n    return None\n"
        "first = Step(name='step')\n"
        "agent = Flow(start=first)\n"
    )
    process = spawn(script)
    assert process.wait() == 1
    assert process.recv_line() is None
    assert b"two nodes are named 'step'" in process.stderr
    assert b"function clash.step" in process.stderr
    assert b"clash.Step object named 'step'" in process.stderr


# -- run -------------------------------------------------------------------------------


def test_run_returns_the_action_and_no_changes(worker: WorkerProcess) -> None:
    call_id = next_id()
    messages = worker.node(call_id, "decide", "run", shared={"notes": ["a"], "q": "héllo"})
    assert messages == [{"type": "result", "id": call_id, "value": {"action": "search"}}]
    done = worker.node(next_id(), "decide", "run", shared={"notes": ["a", "b"]})
    assert outcome(done) == {"action": "answer"}


def test_run_sends_the_whole_changed_key_and_context_messages(worker: WorkerProcess) -> None:
    call_id = next_id()
    messages = worker.node(call_id, "search", "run", shared={"notes": ["note 0"], "q": "x"})
    assert messages == [
        {"type": "progress", "id": call_id, "progress": 1, "total": 1, "message": "searching"},
        {
            "type": "result",
            "id": call_id,
            "value": {"changes": {"set": {"notes": ["note 0", "note 1"]}}},
        },
    ]


def test_run_with_no_action_sets_and_deletes(worker: WorkerProcess) -> None:
    shared = {"notes": ["a", "b"], "scratch": {"x": 1}, "answer": "old"}
    assert outcome(worker.node(next_id(), "answer", "run", shared=shared)) == {
        "changes": {"set": {"answer": "a / b"}, "delete": ["scratch"]}
    }


def test_a_key_set_to_the_same_value_is_no_change(worker: WorkerProcess) -> None:
    shared = {"notes": ["a", "b"], "answer": "a / b"}
    assert outcome(worker.node(next_id(), "answer", "run", shared=shared)) == {}


def test_async_function_node_logs_and_changes(worker: WorkerProcess) -> None:
    call_id = next_id()
    assert worker.node(call_id, "fetch_a", "run", shared={}) == [
        {"type": "log", "level": "info", "message": "fetching a", "id": call_id},
        {"type": "result", "id": call_id, "value": {"changes": {"set": {"a": 1}}}},
    ]
    assert outcome(worker.node(next_id(), "fetch_b", "run", shared={"b": 1})) == {
        "changes": {"set": {"b": 2}}
    }


def test_async_class_node_runs_prep_exec_post_with_current_context(
    worker: WorkerProcess,
) -> None:
    call_id = next_id()
    messages = worker.node(call_id, "Report", "run", shared={"sizes": {"a": 3, "b": 4}})
    assert messages == [
        {"type": "progress", "id": call_id, "progress": 1, "total": 1, "message": "adding up"},
        {"type": "result", "id": call_id, "value": {"changes": {"set": {"total": 7}}}},
    ]


@pytest.mark.parametrize(
    ("fail_times", "result"),
    [
        (0, "ok after 1 tries"),
        (2, "ok after 3 tries"),
        (5, "fallback: try 2 failed"),
    ],
)
def test_class_node_retries_exec_in_process_then_falls_back(
    worker: WorkerProcess, fail_times: int, result: str
) -> None:
    value = outcome(worker.node(next_id(), "Flaky", "run", shared={"fail_times": fail_times}))
    assert value == {"changes": {"set": {"flaky": result}}}


# -- batch phases ---------------------------------------------------------------------


def test_batch_prep_exec_post(worker: WorkerProcess) -> None:
    shared = {"files": ["a.txt", "bb.txt"]}
    assert outcome(worker.node(next_id(), "summarize", "prep", shared=shared)) == {
        "value": ["a.txt", "bb.txt"]
    }
    assert outcome(worker.node(next_id(), "summarize", "exec", item="bb.txt")) == {"value": 6}
    post = worker.node(
        next_id(), "summarize", "post", shared=shared, prep=["a.txt", "bb.txt"], results=[5, 6]
    )
    assert outcome(post) == {
        "action": "summarized",
        "changes": {"set": {"sizes": {"a.txt": 5, "bb.txt": 6}}},
    }


def test_batch_run_does_all_phases_in_one_call(worker: WorkerProcess) -> None:
    value = outcome(worker.node(next_id(), "summarize", "run", shared={"files": ["abc"]}))
    assert value == {"action": "summarized", "changes": {"set": {"sizes": {"abc": 3}}}}


def test_batch_prep_that_is_not_a_list_is_a_tool_error(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "bad_items", "prep", shared={}))
    assert reply["kind"] == "tool_error"
    assert "'bad_items'" in reply["message"]
    assert "list of items" in reply["message"]


def test_a_phase_the_node_does_not_have_is_invalid_arguments(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "decide", "prep", shared={}))
    assert reply["kind"] == "invalid_arguments"
    assert "node 'decide' has no 'prep' phase" in reply["message"]
    reply = error(worker.node(next_id(), "decide", "fallback", shared={}))
    assert reply["kind"] == "invalid_arguments"
    assert "no fallback" in reply["message"]


# -- fallback ---------------------------------------------------------------------------


def test_function_fallback_gets_the_error(worker: WorkerProcess) -> None:
    value = outcome(
        worker.node(
            next_id(),
            "flaky",
            "fallback",
            shared={"x": 1},
            error={"kind": "timeout", "message": "call 12 to flaky timed out after 1s"},
        )
    )
    assert value == {
        "action": "recovered",
        "changes": {"set": {"recovered": "timeout: call 12 to flaky timed out after 1s"}},
    }


def test_class_fallback_runs_prep_exec_fallback_post(worker: WorkerProcess) -> None:
    value = outcome(
        worker.node(
            next_id(),
            "Flaky",
            "fallback",
            shared={},
            error={"kind": "worker_crashed", "message": "exit status 9"},
        )
    )
    assert value == {"changes": {"set": {"flaky": "fallback: exit status 9"}}}


# -- failures ---------------------------------------------------------------------------


def test_a_node_that_raises_is_a_tool_error_with_its_traceback(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "flaky", "run", shared={}))
    assert reply["kind"] == "tool_error"
    assert reply["message"] == "RuntimeError: upstream down"
    trace = reply["traceback"]
    assert trace.startswith("Traceback (most recent call last):\n")
    assert "graph_script.py" in trace
    assert "in flaky" in trace
    assert SDK_FILES not in trace


def test_a_return_that_is_not_an_action_is_a_tool_error(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "bad_action", "run", shared={}))
    assert reply["kind"] == "tool_error"
    assert reply["message"] == (
        "node 'bad_action' returned 42 (int); a node returns an action string or None"
    )
    assert "traceback" not in reply


def test_a_store_value_that_is_not_json_is_a_tool_error(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "not_json", "run", shared={}))
    assert reply["kind"] == "tool_error"
    assert "node 'not_json' set shared['when']" in reply["message"]
    assert "not JSON-serializable" in reply["message"]
    assert "builtins.object" in reply["message"]


def test_unknown_node_lists_the_nodes(worker: WorkerProcess) -> None:
    reply = error(worker.node(next_id(), "nope", "run", shared={}))
    assert reply["kind"] == "unknown_tool"
    assert "no node named 'nope'" in reply["message"]
    assert "decide" in reply["message"]
    assert "summarize" in reply["message"]
    assert "ping" not in reply["message"]  # a tool, not a node


def test_tools_and_nodes_share_the_worker(worker: WorkerProcess) -> None:
    assert outcome(worker.call(next_id(), "ping")) == "pong"
    reply = error(worker.call(next_id(), "decide"))
    assert reply["kind"] == "unknown_tool"  # a node is not a tool


# -- cancel --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["isolated", "shared"])
@pytest.mark.parametrize("name", ["sync_wait", "async_wait"])
def test_cancel_a_node_call(spawn: Spawn, mode: str, name: str) -> None:
    process = spawn(GRAPH, mode=mode)
    process.handshake()
    process.send({"type": "node", "id": 5, "node": name, "phase": "run", "shared": {}})
    assert process.recv()["type"] == "progress"
    start = time.monotonic()
    process.send({"type": "cancel", "id": 5})
    assert process.collect(5, timeout=2) == [
        {"type": "error", "id": 5, "kind": "cancelled", "message": "call 5 was cancelled"}
    ]
    assert time.monotonic() - start < 1
    # The worker serves on.
    assert outcome(process.node(6, "decide", "run", shared={})) == {"action": "search"}
    process.send({"type": "shutdown"})
    assert process.wait() == 0


def test_node_calls_run_side_by_side_in_shared_mode(worker: WorkerProcess) -> None:
    ids = [next_id() for _ in range(3)]
    for call_id in ids:
        worker.send({"type": "node", "id": call_id, "node": "sync_wait", "phase": "run"})
    started = 0
    while started < len(ids):
        started += worker.recv()["type"] == "progress"
    for call_id in ids:
        worker.send({"type": "cancel", "id": call_id})
    replies = [worker.recv() for _ in ids]
    assert sorted(r["id"] for r in replies) == ids
    assert {r["kind"] for r in replies} == {"cancelled"}


def test_run_by_hand_serves_the_flows_of_main(tmp_path: Path) -> None:
    script = tmp_path / "by_hand_graph.py"
    script.write_text(
        "import flw\n"
        "class Greet(flw.Node):\n"
        "    def post(self, shared, prep_res, exec_res):\n"
        "        shared['greeting'] = 'hi ' + shared['name']\n"
        "greet = Greet()\n"
        "hello_flow = flw.Flow(start=greet)\n"
        "if __name__ == '__main__':\n"
        "    flw.run()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=worker_env(),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(
            b'{"type":"welcome","protocol":1}\n'
            b'{"type":"node","id":1,"node":"greet","phase":"run","shared":{"name":"ada"}}\n'
            b'{"type":"shutdown"}\n',
            timeout=10,
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    hello, result = (decode(line, "worker") for line in out.splitlines())
    assert hello["nodes"] == [{"name": "greet", "kind": "node", "description": ""}]
    assert hello["flows"] == [
        {"name": "hello_flow", "start": "greet", "nodes": {"greet": {"node": "greet"}}, "edges": []}
    ]
    assert result == {
        "type": "result",
        "id": 1,
        "value": {"changes": {"set": {"greeting": "hi ada"}}},
    }
