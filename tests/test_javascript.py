"""What is particular to JavaScript and TypeScript workers: `.mjs` and `.ts`
scripts in any folder, without a package.json or an npm install. The
scenarios both languages share are in test_parity.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_flw

JS_TOOLS = Path(__file__).parent / "fixtures" / "tools.mjs"


def test_call_runs_a_javascript_worker_from_its_own_folder():
    r = run_flw("call", str(JS_TOOLS), "echo", "--json", '{"text": "from node"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "from node"


def test_progress_of_a_javascript_tool_reaches_the_terminal():
    r = run_flw("call", str(JS_TOOLS), "slow", "--json", '{"seconds": 0.2, "steps": 3}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "done"
    for i in range(1, 4):
        assert f"progress {i}/3: step {i}" in r.stderr


def test_tools_lists_the_schemas_of_the_exports():
    r = run_flw("tools", str(JS_TOOLS), "--json")
    assert r.returncode == 0, r.stderr
    tools = {t["name"]: t for t in json.loads(r.stdout)}
    assert set(tools) == {"echo", "slow"}
    assert tools["echo"]["input_schema"]["required"] == ["text"]


TYPED = """\
import { tool } from "flw-worker";

interface Greeting {
  text: string;
}

function shout(g: Greeting): string {
  return g.text.toUpperCase();
}

export const loud = tool({
  description: "Shout the text.",
  input: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: async ({ text }): Promise<string> => shout({ text }),
});
"""


@pytest.mark.parametrize("name", ["agent.ts", "agent.mts"])
def test_a_typescript_worker_runs_from_a_folder_without_package_json(tmp_path, name):
    script = tmp_path / name
    script.write_text(TYPED)
    # On Node < 22.6 the first run installs the tsx loader into flw's cache.
    r = run_flw("call", str(script), "loud", "--json", '{"text": "typed"}', timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "TYPED"
