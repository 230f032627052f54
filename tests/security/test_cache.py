"""flw's cache folder, where it unpacks the SDK that workers run: never a
shared or relative folder, and nothing in it is run unless it is the user's
alone and matches what the binary carries (issue: code planted in a shared
or relative cache ran as the user)."""

from __future__ import annotations

import os
import resource
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import FLW, TOOLS

IS_ROOT = os.geteuid() == 0
CALL = ["call", str(TOOLS), "echo", "--json", '{"text": "hi"}']


def flw(env: dict[str, str], *args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLW, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, **kw
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment with no cache variables and TMPDIR in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")}
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(extra)
    return env


def planted_init(root: Path, marker: Path) -> list[Path]:
    """Appends code that writes marker to every unpacked flw/__init__.py
    under root, as another user who can write there would; returns them."""
    inits = [p for p in root.rglob("flw/__init__.py") if "python" in p.parts]
    for init in inits:
        init.chmod(0o666)
        with init.open("a") as f:
            f.write(f"\nopen({str(marker)!r}, 'w').write('planted code ran')\n")
        if IS_ROOT:
            os.chown(init, 65534, 65534)
    return inits


def test_without_home_the_cache_is_a_private_folder_and_planted_code_does_not_run(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    first = flw(env, *CALL)
    assert first.returncode == 0, first.stderr
    private = tmp_path / "tmp" / f"flw-{os.geteuid()}"
    assert private.is_dir(), sorted(p.name for p in (tmp_path / "tmp").iterdir())
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (tmp_path / "tmp" / "flw").exists(), "the shared /tmp/flw of old"
    marker = tmp_path / "marker"
    assert planted_init(tmp_path / "tmp", marker), "no unpacked SDK found to plant into"
    second = flw(env, *CALL)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == '"hi"'
    assert not marker.exists(), "code planted in the cache ran"


@pytest.mark.parametrize(
    "variables",
    [{"HOME": ""}, {"HOME": "", "XDG_CACHE_HOME": ""}, {"HOME": "relative", "XDG_CACHE_HOME": "cache"}],
    ids=["empty-home", "empty-xdg", "relative"],
)
def test_empty_or_relative_variables_never_put_the_cache_in_the_working_folder(
    tmp_path: Path, variables: dict[str, str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = flw(clean_env(tmp_path, **variables), *CALL, cwd=work)
    assert r.returncode == 0, r.stderr
    assert list(work.iterdir()) == [], "flw wrote into the working folder"
    assert (tmp_path / "tmp" / f"flw-{os.geteuid()}").is_dir()


def test_a_cache_folder_others_can_write_is_refused_with_one_clear_error(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    shared = tmp_path / "tmp" / f"flw-{os.geteuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    r = flw(env, *CALL)
    assert r.returncode != 0
    assert str(shared) in r.stderr and "written by other users" in r.stderr, r.stderr
    assert r.stderr.count("cannot unpack the Python SDK") == 1, r.stderr
    assert list(shared.iterdir()) == [], "flw wrote into a folder others can write"


@pytest.mark.skipif(not IS_ROOT, reason="making a folder of another user's needs root")
def test_a_cache_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    theirs = tmp_path / "tmp" / f"flw-{os.geteuid()}"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    r = flw(env, *CALL)
    assert r.returncode != 0
    assert "belongs to uid 65534" in r.stderr, r.stderr


def test_an_unwritable_home_falls_back_to_the_private_folder(tmp_path: Path) -> None:
    # /dev/null is no folder: nothing can be made under it, not even by root.
    r = flw(clean_env(tmp_path, HOME="/dev/null"), *CALL)
    assert r.returncode == 0, r.stderr
    assert "/dev/null/.cache/flw" in r.stderr, "the fallback says why"
    assert (tmp_path / "tmp" / f"flw-{os.geteuid()}" / "python").is_dir()


def test_a_changed_sdk_file_in_the_users_own_cache_is_replaced(tmp_path: Path) -> None:
    env = clean_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert flw(env, *CALL).returncode == 0
    marker = tmp_path / "marker"
    for init in planted_init(tmp_path / "cache", marker):
        init.chmod(0o600)
        if IS_ROOT:
            os.chown(init, 0, 0)  # the user's own file, with other content
    r = flw(env, *CALL)
    assert r.returncode == 0, r.stderr
    assert not marker.exists(), "a file that differs from the embedded SDK ran"


def limit_file_size(nbytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return apply


def test_a_full_disk_gives_one_clear_error_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    env = clean_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = flw(env, *CALL, preexec_fn=limit_file_size(0))
    assert r.returncode != 0
    assert r.stderr.count("cannot unpack the Python SDK") == 1, r.stderr
    assert "File too large" in r.stderr, r.stderr
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if "tmp" in p.name]
    assert leftovers == []


def test_a_manifest_that_cannot_be_written_leaves_no_temporary_file(tmp_path: Path) -> None:
    env = clean_env(tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = flw(env, "tools", str(TOOLS))  # unpacks the SDK
    assert r.returncode == 0, r.stderr
    for old in (tmp_path / "cache" / "flw" / "manifests").glob("*"):
        old.unlink()
    # The SDK is there: only the manifest's write meets the full disk.
    r = flw(env, *CALL, preexec_fn=limit_file_size(1))
    assert r.returncode == 0, r.stderr
    manifests = tmp_path / "cache" / "flw" / "manifests"
    assert [p.name for p in manifests.iterdir() if "tmp" in p.name] == []
