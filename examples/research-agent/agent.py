"""A research agent: decide -> search -> decide ... -> answer.

The model reads the question and the notes found so far and decides: search
the notes folder again (and for what), or answer. The answer streams, token
by token, to whoever runs the flow (`flw run` prints it as it comes; an MCP
host gets it as progress messages). Any OpenAI-compatible endpoint works:

    flw run examples/research-agent/agent.py research --json '{"question": "How does flw cancel a call?"}'

with OPENAI_BASE_URL / OPENAI_MODEL (and OPENAI_API_KEY) set; see README.md
beside this file for the offline version against the loopback server.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from flw import Flow, llm, node, tool

NOTES = Path(__file__).resolve().parent / "notes"

#: The prompt of the decide step; `$question` and `$notes` are filled in.
DECIDE_PROMPT = """You are a research assistant with a folder of notes.
Decide whether the notes found so far answer the question. Reply with JSON only:
{"action": "search", "query": "<words to look for>"} to search the notes, or
{"action": "answer"} when the notes are enough.

Question: $question

Notes so far:
$notes"""

#: The prompt of the answer step.
ANSWER_PROMPT = """Answer the question from the notes in two or three sentences.
Name the note files you used.

Question: $question

Notes:
$notes"""

#: The most searches a run makes before it answers with what it has.
MAX_SEARCHES = 3


@tool
def search_notes(query: str, limit: int = 2) -> list[dict]:
    """Search the notes folder: the files that share the most words with the query.

    Args:
        query: the words to look for.
        limit: how many files to return at most.
    """
    words = set(re.findall(r"[a-z]+", query.lower()))
    scored = []
    for path in sorted(NOTES.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        score = sum(1 for word in re.findall(r"[a-z]+", text.lower()) if word in words)
        if score:
            scored.append((score, path.name, text))
    scored.sort(key=lambda s: -s[0])
    return [{"file": name, "text": text} for _, name, text in scored[:limit]]


def notes_text(shared: dict) -> str:
    """The notes of the run as prompt text."""
    notes = shared.get("notes", [])
    if not notes:
        return "(none)"
    return "\n\n".join(f"[{n['file']}]\n{n['text'].strip()}" for n in notes)


@node
def decide(shared: dict) -> str:
    """Ask the model whether to search again or answer."""
    if len(shared.get("searches", [])) >= MAX_SEARCHES:
        return "answer"
    prompt = Template(DECIDE_PROMPT).substitute(question=shared["question"], notes=notes_text(shared))
    choice = llm.chat(prompt, json=True, stream=False).json()
    if isinstance(choice, dict) and choice.get("action") == "search" and choice.get("query"):
        shared.setdefault("searches", []).append(str(choice["query"]))
        return "search"
    return "answer"


@node
def search(shared: dict) -> None:
    """Look the last query up in the notes folder; keep the files not seen yet."""
    notes = shared.setdefault("notes", [])
    seen = {n["file"] for n in notes}
    notes.extend(hit for hit in search_notes(shared["searches"][-1]) if hit["file"] not in seen)


@node
def answer(shared: dict) -> None:
    """Write the answer; it streams to the caller as it comes."""
    prompt = Template(ANSWER_PROMPT).substitute(question=shared["question"], notes=notes_text(shared))
    shared["answer"] = llm.chat(prompt, temperature=0.2).content


decide - "search" >> search
decide - "answer" >> answer
search >> decide
research = Flow(start=decide, max_steps=2 * MAX_SEARCHES + 2)
