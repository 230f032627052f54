"""The graph DSL in one process: linking, Flow.run semantics, names and documents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flw import (
    AsyncBatchNode,
    AsyncNode,
    BatchNode,
    Context,
    Flow,
    FunctionNode,
    Node,
    NodeDefinitionError,
    NodeError,
    NodeResultError,
    Parallel,
    current_context,
    node,
    registered_nodes,
)
from flw.graph._manifest import build_graph


def make_agent() -> Flow:
    """The loop of the README: search until two notes, then answer."""

    @node
    def decide(shared: dict) -> str:
        return "search" if len(shared.get("notes", [])) < 2 else "answer"

    @node
    def search(shared: dict) -> None:
        shared.setdefault("notes", []).append(f"note {len(shared.get('notes', []))}")

    @node
    def answer(shared: dict) -> None:
        shared["answer"] = " / ".join(shared["notes"])

    decide - "search" >> search
    decide - "answer" >> answer
    search >> decide
    return Flow(start=decide)


# -- running in-process ------------------------------------------------------------------


def test_the_agent_loop_runs_in_process() -> None:
    shared: dict[str, Any] = {"question": "q"}
    assert make_agent().run(shared) is None  # answer returned no action
    assert shared == {"question": "q", "notes": ["note 0", "note 1"], "answer": "note 0 / note 1"}


def test_the_agent_loop_runs_on_a_running_loop() -> None:
    shared: dict[str, Any] = {}
    asyncio.run(make_agent().run_async(shared))
    assert shared["answer"] == "note 0 / note 1"


def test_a_decorated_function_stays_callable_and_registered() -> None:
    @node
    def decide(shared: dict) -> str:
        """Pick the next step.

        Args:
            shared: the store.
        """
        return "search" if len(shared.get("notes", [])) < 2 else "answer"

    assert isinstance(decide, FunctionNode)
    assert decide({"notes": []}) == "search"
    assert decide.__name__ == "decide"
    assert decide.name == "decide"
    assert decide.description == "Pick the next step."
    assert registered_nodes() == [decide]


def test_linking_returns_the_target_and_records_successors() -> None:
    @node
    def a(shared: dict) -> None: ...

    @node
    def b(shared: dict) -> None: ...

    @node
    def c(shared: dict) -> None: ...

    assert (a >> b) is b
    assert (a - "other" >> c) is c
    assert b.next(c, action="x") is c
    assert a.successors == {"default": b, "other": c}
    assert b.successors == {"x": c}
    with pytest.raises(TypeError, match="action must be a string"):
        a - 3  # type: ignore[operator]
    with pytest.raises(TypeError, match="decorate functions with @node"):
        a >> print  # type: ignore[operator]
    with pytest.warns(UserWarning, match="Overwriting successor for action 'default'"):
        a >> c


def test_a_node_gets_the_context_as_second_parameter_and_from_current_context() -> None:
    seen: list[Any] = []

    @node
    def step(shared: dict, ctx: Context) -> None:
        seen.append((ctx, current_context()))
        ctx.progress(1, 2)  # detached: logs, never fails

    assert current_context() is None
    step.run({})
    [(ctx, current)] = seen
    assert isinstance(ctx, Context)
    assert current is ctx
    assert ctx.tool == "step"
    assert current_context() is None


def test_a_bad_action_names_the_node_and_the_value() -> None:
    @node
    def bad(shared: dict) -> Any:
        return {"go": "left"}

    with pytest.raises(NodeResultError, match=r"node 'bad' returned \{'go': 'left'\} \(dict\)"):
        bad.run({})


def test_retries_roll_back_failed_attempts_then_succeed() -> None:
    tries: list[dict[str, Any]] = []

    @node(retries=2, backoff=0.001)
    def shaky(shared: dict) -> str:
        tries.append(dict(shared))
        shared["attempt"] = len(tries)
        if len(tries) < 3:
            raise ConnectionError("reset")
        return "ok"

    shared: dict[str, Any] = {"n": 1}
    assert shaky.run(shared) == "ok"
    assert tries == [{"n": 1}, {"n": 1}, {"n": 1}]  # each try saw the store before the failures
    assert shared == {"n": 1, "attempt": 3}


def test_without_a_fallback_the_last_error_is_raised() -> None:
    @node(retries=1, backoff=0.001)
    def down(shared: dict) -> None:
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError, match="still down"):
        down.run({})


def test_the_fallback_gets_a_node_error_and_its_action_counts() -> None:
    def recover(shared: dict, error: NodeError) -> str:
        shared["error"] = (error.kind, error.message)
        assert isinstance(error.__cause__, ValueError)
        return "recovered"

    @node(fallback=recover)
    def failing(shared: dict) -> None:
        shared["half"] = True
        raise ValueError("bad input")

    @node
    def after(shared: dict) -> None:
        shared["after"] = True

    failing - "recovered" >> after
    shared: dict[str, Any] = {}
    assert Flow(start=failing).run(shared) is None
    assert shared == {"error": ("tool_error", "ValueError: bad input"), "after": True}


class Flaky(Node):
    def __init__(self, fail_times: int, **options: Any) -> None:
        super().__init__(max_retries=3, **options)
        self.fail_times = fail_times
        self.seen: list[int] = []

    def exec(self, prep_res: Any) -> str:
        self.seen.append(self.cur_retry)
        if self.cur_retry < self.fail_times:
            raise ValueError(f"try {self.cur_retry}")
        return f"ok at {self.cur_retry}"

    def exec_fallback(self, prep_res: Any, exc: Exception) -> str:
        return f"fallback after {exc}"

    def post(self, shared: dict, prep_res: Any, exec_res: Any) -> None:
        shared["result"] = exec_res


@pytest.mark.parametrize(
    ("fail_times", "result"), [(0, "ok at 0"), (2, "ok at 2"), (3, "fallback after try 2")]
)
def test_class_node_retries_exec_like_pocketflow(fail_times: int, result: str) -> None:
    shared: dict[str, Any] = {}
    Flaky(fail_times).run(shared)
    assert shared == {"result": result}


def test_class_node_default_exec_fallback_reraises() -> None:
    class Broken(Node):
        def exec(self, prep_res: Any) -> None:
            raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        Broken(max_retries=2).run({})


def test_batch_node_runs_items_in_order() -> None:
    class Sizes(BatchNode):
        def prep(self, shared: dict) -> list[str]:
            return shared["files"]

        def exec(self, item: str) -> int:
            return len(item)

        def post(self, shared: dict, prep_res: list[str], exec_res: list[int]) -> str:
            shared["sizes"] = exec_res
            return "done"

    shared: dict[str, Any] = {"files": ["a", "bbb", "cc"]}
    assert Sizes().run(shared) == "done"
    assert shared["sizes"] == [1, 3, 2]


def test_batch_prep_must_be_a_list() -> None:
    class Bad(BatchNode):
        def prep(self, shared: dict) -> Any:
            return "abc"

    with pytest.raises(NodeResultError, match="batch node 'Bad': prep returned a str"):
        Bad().run({})


class Double(AsyncBatchNode):
    async def prep_async(self, shared: dict) -> list[int]:
        return shared["numbers"]

    async def exec_async(self, item: int) -> int:
        await asyncio.sleep(0)
        return item * 2

    async def post_async(self, shared: dict, prep_res: Any, exec_res: list[int]) -> None:
        shared["doubled"] = exec_res


def test_async_nodes_run_from_sync_run() -> None:
    @node
    async def first(shared: dict) -> None:
        await asyncio.sleep(0)
        shared["numbers"] = [1, 2, 3]

    first >> Double()
    shared: dict[str, Any] = {}
    Flow(start=first).run(shared)
    assert shared == {"numbers": [1, 2, 3], "doubled": [2, 4, 6]}


def test_sync_run_works_under_a_running_loop() -> None:
    """As in a notebook: flow.run() from code that runs on an event loop."""

    async def main() -> dict[str, Any]:
        shared: dict[str, Any] = {"numbers": [5]}
        Double().run(shared)
        return shared

    assert asyncio.run(main())["doubled"] == [10]


def test_async_node_retries_and_fallback() -> None:
    class Once(AsyncNode):
        async def exec_async(self, prep_res: Any) -> str:
            if self.cur_retry == 0:
                raise ValueError("first")
            return "second"

        async def post_async(self, shared: dict, prep_res: Any, exec_res: str) -> str:
            return exec_res

    assert Once(max_retries=2).run({}) == "second"
    with pytest.raises(ValueError, match="first"):
        Once().run({})


def test_nested_flow_hands_its_last_action_to_the_parent() -> None:
    @node
    def inner_step(shared: dict) -> str:
        shared["inner"] = True
        return "escalate"

    @node
    def escalated(shared: dict) -> None:
        shared["escalated"] = True

    inner = Flow(start=inner_step)
    inner - "escalate" >> escalated
    shared: dict[str, Any] = {}
    assert Flow(start=inner).run(shared) is None
    assert shared == {"inner": True, "escalated": True}


def test_parallel_branches_see_the_same_store_and_merge_in_listed_order() -> None:
    @node
    def left(shared: dict) -> None:
        shared["seen_left"] = sorted(shared)
        shared["winner"] = "left"
        shared["left"] = 1

    @node
    def right(shared: dict) -> None:
        shared["seen_right"] = sorted(shared)
        shared["winner"] = "right"
        del shared["old"]

    @node
    def after(shared: dict) -> None:
        shared["after"] = True

    fan = Parallel(left, right)
    fan >> after
    shared: dict[str, Any] = {"old": 0}
    assert Flow(start=fan).run(shared) is None
    assert shared == {
        "seen_left": ["old"],
        "seen_right": ["old"],
        "winner": "right",
        "left": 1,
        "after": True,
    }


def test_max_steps_stops_a_loop() -> None:
    @node
    def spin(shared: dict) -> None:
        shared["n"] = shared.get("n", 0) + 1

    spin >> spin
    shared: dict[str, Any] = {}
    with pytest.raises(NodeError) as info:
        Flow(start=spin, max_steps=5).run(shared)
    assert info.value.kind == "max_steps"
    assert shared == {"n": 5}


def test_an_action_with_no_edge_ends_the_flow_with_a_warning() -> None:
    @node
    def pick(shared: dict) -> str:
        return "nowhere"

    @node
    def other(shared: dict) -> None: ...

    pick - "somewhere" >> other
    with pytest.warns(UserWarning, match=r"Flow ends: 'nowhere' not found in \['somewhere'\]"):
        assert Flow(start=pick).run({}) == "nowhere"


def test_pocketflow_spellings() -> None:
    class Hello(Node):
        def post(self, shared: dict, prep_res: Any, exec_res: Any) -> str:
            shared["hi"] = True
            return "bye"

    flow = Flow()
    hello = Hello()
    assert flow.start(hello) is hello
    shared: dict[str, Any] = {}
    assert flow.run(shared) == "bye"
    assert shared == {"hi": True}


# -- definitions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"retries": True}, "retries must be an integer >= 0"),
        ({"backoff": -0.1}, "backoff must be a number of seconds >= 0"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"limit": 0}, "limit must be an integer >= 1"),
        ({"name": "has space"}, "'has space' is not a valid name"),
    ],
)
def test_bad_node_options(options: dict[str, Any], words: str) -> None:
    with pytest.raises(NodeDefinitionError, match=words):

        @node(**options)
        def step(shared: dict) -> None: ...


def test_bad_node_functions() -> None:
    def nothing() -> None: ...

    with pytest.raises(NodeDefinitionError, match=r"takes 0 parameter\(s\); it must take"):
        node(nothing)
    with pytest.raises(NodeDefinitionError, match="not a valid name"):
        node(lambda shared: None)
    with pytest.raises(NodeDefinitionError, match="'extra' need a default"):

        @node
        def three(shared: dict, ctx: Context, extra: int) -> None: ...

    with pytest.raises(NodeDefinitionError, match="is a generator"):

        @node
        def gen(shared: dict) -> Any:
            yield None

    with pytest.raises(NodeDefinitionError, match=r"fallback .* must take"):

        @node(fallback=lambda shared: None)
        def step(shared: dict) -> None: ...


def test_two_functions_with_one_name_fail_at_decoration() -> None:
    @node(name="step")
    def first(shared: dict) -> None: ...

    with pytest.raises(NodeDefinitionError, match="two nodes are named 'step'"):

        @node(name="step")
        def second(shared: dict) -> None: ...


def test_class_node_options() -> None:
    with pytest.raises(NodeDefinitionError, match="max_retries must be an integer >= 1"):
        Node(max_retries=0)
    with pytest.raises(NodeDefinitionError, match="wait must be a number of seconds >= 0"):
        Node(wait=-1)
    with pytest.raises(NodeDefinitionError, match="give it at least one branch"):
        Parallel()
    with pytest.raises(NodeDefinitionError, match="max_steps must be an integer >= 1"):
        Flow(max_steps=0)


# -- names and documents ------------------------------------------------------------------------


class Fetch(Node):
    """Fetch a page.

    Args:
        ignored: not part of the description.
    """

    def exec_fallback(self, prep_res: Any, exc: Exception) -> None:
        return None


class Quiet(AsyncNode):
    pass


def test_names_come_from_name_globals_and_classes() -> None:
    @node(timeout=1.5, backoff=0.25, retries=3, limit=4, description="Start here.")
    def begin(shared: dict) -> None: ...

    page = Fetch()
    explicit = Fetch(name="fetch.other", retries=1)
    anonymous = Quiet()
    fan = Parallel(explicit, anonymous, limit=1)
    begin >> page >> fan
    agent = Flow(start=begin, name="agent.main", deadline=0.5)
    graph = build_graph({"page": page, "alias": page, "agent": agent}, registered_nodes())
    assert graph.manifest == [
        {"name": "begin", "kind": "node", "description": "Start here."},
        {"name": "page", "kind": "node", "description": "Fetch a page.", "fallback": True},
        {"name": "fetch.other", "kind": "node", "description": "Fetch a page.", "fallback": True},
        {"name": "Quiet", "kind": "node", "description": ""},
    ]
    assert graph.flows == [
        {
            "name": "agent.main",
            "start": "begin",
            "nodes": {
                "begin": {
                    "node": "begin",
                    "retries": 3,
                    "backoff_ms": 250,
                    "timeout_ms": 1500,
                    "limit": 4,
                },
                "page": {"node": "page"},
                "parallel_1": {"parallel": ["fetch.other", "Quiet"], "limit": 1},
                "fetch.other": {"node": "fetch.other", "retries": 1},
                "Quiet": {"node": "Quiet"},
            },
            "edges": [
                {"from": "begin", "to": "page", "action": "default"},
                {"from": "page", "to": "parallel_1", "action": "default"},
            ],
            "deadline_ms": 500,
        }
    ]
    assert graph.needs_async
    assert set(graph.nodes) == {"begin", "page", "fetch.other", "Quiet"}
    assert graph.nodes["page"] is page


def test_flows_nested_by_name_are_announced_and_unnamed_ones_inlined() -> None:
    @node
    def a(shared: dict) -> None: ...

    @node
    def b(shared: dict) -> None: ...

    @node
    def c(shared: dict) -> None: ...

    named = Flow(start=b, name="second")
    inline = Flow(start=c)
    a >> named >> inline
    outer = Flow(start=a)
    graph = build_graph({"outer": outer}, [])
    assert [n["name"] for n in graph.manifest] == ["a", "c", "b"]  # in the order found
    assert graph.flows == [
        {
            "name": "outer",
            "start": "a",
            "nodes": {
                "a": {"node": "a"},
                "second": {"flow": "second"},
                "flow_1": {
                    "flow": {
                        "name": "flow_1",
                        "start": "c",
                        "nodes": {"c": {"node": "c"}},
                        "edges": [],
                    }
                },
            },
            "edges": [
                {"from": "a", "to": "second", "action": "default"},
                {"from": "second", "to": "flow_1", "action": "default"},
            ],
        },
        {"name": "second", "start": "b", "nodes": {"b": {"node": "b"}}, "edges": []},
    ]


def test_two_objects_with_one_name_are_an_error_naming_both() -> None:
    first, second = Fetch(), Fetch()
    first >> second
    with pytest.raises(NodeDefinitionError) as info:
        build_graph({"agent": Flow(start=first)}, [])
    message = str(info.value)
    assert "two nodes are named 'Fetch'" in message
    assert message.count("an unnamed test_graph.Fetch object (named after its class)") == 2
    assert "name=..." in message


def test_a_flow_named_like_a_node_in_its_document_is_an_error() -> None:
    @node
    def step(shared: dict) -> None: ...

    step >> Flow(start=Fetch(), name="step")
    with pytest.raises(NodeDefinitionError, match="two entries would have the id 'step'"):
        build_graph({"agent": Flow(start=step)}, [])


def test_a_branch_with_successors_is_refused() -> None:
    @node
    def a(shared: dict) -> None: ...

    @node
    def b(shared: dict) -> None: ...

    fan = Parallel(a)
    a >> b
    with pytest.raises(NodeDefinitionError, match="branch a has successors"):
        build_graph({"agent": Flow(start=fan)}, [])
    with pytest.raises(NodeDefinitionError, match="put a chain of nodes in a Flow"):
        Flow(start=fan).run({})


def test_a_flow_without_start_is_refused() -> None:
    with pytest.raises(NodeDefinitionError, match="flow 'agent' has no start node"):
        build_graph({"agent": Flow()}, [])


def test_a_global_flow_bound_twice_is_announced_once_by_its_first_name() -> None:
    @node
    def only(shared: dict) -> None: ...

    flow = Flow(start=only)
    graph = build_graph({"main": flow, "alias": flow}, [])
    assert [f["name"] for f in graph.flows] == ["main"]


def test_an_event_hook_that_raises_does_not_change_the_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []

    def hook(event: dict[str, Any]) -> None:
        seen.append(event["event"])
        raise RuntimeError("hook broke")

    shared: dict[str, Any] = {"question": "q"}
    assert make_agent().run(shared, on_event=hook) is None
    assert shared["answer"] == "note 0 / note 1"  # the run went on as without a hook
    assert seen == ["node_started"]  # one call, then no more
    assert "on_event raised RuntimeError: hook broke" in capsys.readouterr().err
    with pytest.raises(TypeError, match="on_event must be a function"):
        make_agent().run({}, on_event="not a function")  # type: ignore[arg-type]
