"""Entry points: ``python -m flw SCRIPT`` (``main``) and ``flw.run()``.

``main`` takes the channel, starts the worker's reader thread and watchdog,
imports the user's script (``flw.run()`` does nothing meanwhile) and serves
its tools and graph nodes (the flows and nodes among the script's module
globals). ``run`` serves those of a script started by hand.

With ``FLW_KEEPER=1`` (set by the supervisor), ``main`` first forks: the
parent stays as the worker's keeper (``_keeper.py``), the child goes on as
the worker. ``python -m flw --fork-server SCRIPT`` runs a fork server
(``_fork_server.py``) instead of a worker.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from .._tool import registered_tools
from .._version import __version__
from ._channel import Channel, open_channel
from ._loop import Settings, Worker, flush_std_streams, note

_loading_script = False
_serving = False
_script_globals: Mapping[str, Any] = {}


def _module_name(path: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.isidentifier() and stem not in sys.modules:
        return stem
    return "__flw_script__"


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the script from its source every time, never from
    ``__pycache__``: a pyc is trusted when the source's size and mtime (in
    whole seconds) match, so a save within the second of the last one, of
    the same size, would otherwise run the old code after a hot swap."""

    def get_code(self, fullname: str) -> types.CodeType:
        return self.source_to_code(self.get_data(self.path), self.path)


def load_script(path: str, argv: Sequence[str] = ()) -> int | None:
    """Import the user's script as a module; ``flw.run()`` is a no-op meanwhile.

    Returns ``None`` on success, else the exit status after writing the
    reason (the traceback, from the script's first frame on) to stderr.
    The module's globals are kept for ``script_globals()``.
    """
    global _loading_script, _script_globals
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        sys.stderr.write(f"flw: cannot load {path}: no such file\n")
        return 1
    sys.argv = [path, *argv]
    sys.path.insert(0, os.path.dirname(full))
    name = _module_name(full)
    loader = _FreshSourceLoader(name, full)
    spec = importlib.util.spec_from_file_location(name, full, loader=loader)
    if spec is None:
        sys.stderr.write(f"flw: cannot load {path}\n")
        return 1
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _loading_script = True
    try:
        loader.exec_module(module)
    except SystemExit as exc:
        sys.modules.pop(name, None)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException as exc:
        sys.modules.pop(name, None)
        from ._load_error import load_failure

        sys.stderr.write(f"flw: cannot load {path}: {load_failure(exc, full)}")
        return 1
    finally:
        _loading_script = False
        flush_std_streams()
    _script_globals = module.__dict__
    return None


def script_globals() -> Mapping[str, Any]:
    """The module globals of the script ``load_script`` loaded (empty before)."""
    return _script_globals


_USAGE = """\
usage: python -m flw SCRIPT [ARGS...]
       python -m flw --fork-server SCRIPT [ARGS...]

Runs the @tool functions and graph nodes of SCRIPT as an flw worker. The
supervisor starts this with the protocol channel on FLW_CHANNEL_FD; without
it the worker speaks the protocol on stdin/stdout. With --fork-server, SCRIPT
is imported once and workers are forked from it on the supervisor's request
(fd 3 is then the control socket, fd 4 the supervisor's lifeline).
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flw SCRIPT``: load the script and serve its tools."""
    global _serving
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(_USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        sys.stdout.write(f"flw {__version__}\n")
        return 0
    if args[0] == "--fork-server":
        if len(args) < 2:
            sys.stderr.write(_USAGE)
            return 2
        from ._fork_server import serve

        _line_buffer_stdout()
        _serving = True
        return serve(args[1], args[2:])
    script = args[0]
    settings = Settings.from_env(os.environ, os.path.basename(script))
    if os.environ.pop("FLW_KEEPER", None) == "1":
        _become_keeper(settings.label)
    channel = _take_channel(os.environ, settings.label)
    if channel is None:
        return 2
    _line_buffer_stdout()
    _serving = True
    worker = Worker(channel, settings)
    worker.start_reader()
    worker.install_signal_handlers()
    status = load_script(script, args[1:])
    if status is not None:
        flush_std_streams()
        os._exit(status)
    return worker.serve(registered_tools(), script_globals())


def _become_keeper(label: str) -> None:
    """Exec mode: fork the worker and stay as its keeper; return in the worker."""
    from ._keeper import kill_grace_seconds, start_worker

    raw = os.environ.get("FLW_CHANNEL_FD")
    channel_fd = int(raw) if raw and raw.isdigit() else None
    grace = kill_grace_seconds(os.environ.pop("FLW_KILL_GRACE_MS", None))
    start_worker(label, channel_fd, None, grace)


def _line_buffer_stdout() -> None:
    """Output of tools reaches the supervisor's log line by line, not at exit."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(Exception):
            reconfigure(line_buffering=True)


def _take_channel(environ: MutableMapping[str, str], label: str) -> Channel | None:
    try:
        return open_channel(environ)
    except (OSError, ValueError) as exc:
        note(label, f"cannot open the protocol channel: {exc}")
        return None


def run() -> None:
    """Serve the tools registered so far (and the graph nodes and flows of
    ``__main__``) as a worker, until ``shutdown``.

    For a script run by hand (``python agent.py`` ending in
    ``if __name__ == "__main__": flw.run()``): speaks the protocol on the
    descriptor in ``FLW_CHANNEL_FD`` or else on stdin/stdout (fd 1 is then
    pointed at stderr, so ``print()`` cannot corrupt it). Does nothing when
    the script is being loaded by ``python -m flw`` or a worker already
    runs. Exits the process with a non-zero status when serving fails.
    """
    global _serving
    if _loading_script or _serving:
        return
    _serving = True
    label = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    settings = Settings.from_env(os.environ, label)
    channel = _take_channel(os.environ, settings.label)
    if channel is None:
        raise SystemExit(2)
    _line_buffer_stdout()
    worker = Worker(channel, settings)
    worker.start_reader()
    worker.install_signal_handlers()
    main_module = sys.modules.get("__main__")
    status = worker.serve(registered_tools(), getattr(main_module, "__dict__", {}))
    if status != 0:
        raise SystemExit(status)
