"""The Python half of the handoff flow: drafts a paragraph on the topic."""

from flw import llm, node

#: The prompt of the draft step; `{topic}` is filled in.
DRAFT_PROMPT = "Write a short paragraph about {topic} for a developer audience."


@node
def draft(shared: dict) -> None:
    """Draft a paragraph about the topic (it streams to the caller)."""
    shared["draft"] = llm.chat(DRAFT_PROMPT.format(topic=shared["topic"])).content
    shared["by"] = ["python"]
