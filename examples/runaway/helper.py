"""The runaway tool's helper process: streams a second essay from the model
endpoint with nothing but the standard library, and reads it to the end."""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> None:
    topic = sys.argv[1] if len(sys.argv) > 1 else "anything"
    base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")
    headers = {"Content-Type": "application/json"}
    if os.environ.get("OPENAI_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
    body = {
        "model": os.environ.get("OPENAI_MODEL", "loopback"),
        "stream": True,
        "messages": [{"role": "user", "content": f"Write a very long essay about {topic} (helper)."}],
    }
    request = urllib.request.Request(f"{base}/chat/completions", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request) as response:
        for _line in response:
            pass


if __name__ == "__main__":
    main()
