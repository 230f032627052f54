"""The hot-swap tool, served by flw (the `swap` workload of bench/driver).

The driver copies this script into a folder of its own, serves the copy with
`flw mcp`, and rewrites the VERSION line while calls run: each result says
which version of the script produced it.
"""

from flw import tool

VERSION = "v1"


@tool
def echo(text: str) -> str:
    """Return the text prefixed with the script's version, e.g. "v1:hello"."""
    return f"{VERSION}:{text}"
