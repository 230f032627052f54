"""The smallest agent graph: decide -> search -> decide ... -> answer.

flw run examples/hello-graph/agent.py agent --json '{"question": "why"}'
flw graph examples/hello-graph/agent.py agent
flw mcp examples/hello-graph/agent.py      # the flow is an MCP tool
"""

from flw import Flow, node


@node
def decide(shared: dict) -> str:
    """Search until there are two notes, then answer."""
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
agent = Flow(start=decide)
