"""`make env` on a fresh Debian machine: a clean environment (`env -i`, an empty HOME, a PATH with
Debian's python3 and no uv) gets uv into .tools/ (a private venv, never the system Python, which
refuses pip installs: PEP 668) and then the project's .venv; a python3 without venv support, or
one too old, stops with one line saying what to install.

Only the machine's download caches are reused (uv's and pip's), so a repeat run is quick; the
package index is the ordinary one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")
CLEAN_PATH = "/usr/bin:/bin"
PROJECT = ("Makefile", "scripts", "pyproject.toml", "uv.lock", "README.md", "src")

if not SYSTEM_PYTHON.exists():  # pragma: no cover - Debian's python3 is the point of the test
    pytest.fail("no /usr/bin/python3: install Debian's python3 and python3-venv", pytrace=False)


def fresh_clone(tmp_path: Path) -> Path:
    """The files `make env` uses, as a fresh clone has them (no .venv, no .tools)."""
    clone = tmp_path / "calsync"
    clone.mkdir()
    skip = shutil.ignore_patterns(".venv", ".tools", "__pycache__", "*.pyc", "data")
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=skip)
        else:
            shutil.copy2(source, clone / name)
    return clone


def clean_env(tmp_path: Path, path: str = CLEAN_PATH) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8"}
    # this machine's download caches (not settings): a repeat run needs no download
    real_home = Path(os.environ.get("HOME", "/root"))
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR", str(real_home / ".cache" / "uv"))
    env["PIP_CACHE_DIR"] = os.environ.get("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    return env


def make(clone: Path, env: dict[str, str], target: str = "env") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/make", "--no-print-directory", *target.split()],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def stub_python(tmp_path: Path, script: str) -> str:
    """A PATH whose python3 is `script` (a shell script), then the clean PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(0o755)
    return f"{bin_dir}:{CLEAN_PATH}"


def test_the_premise_no_uv_on_the_clean_path() -> None:
    assert shutil.which("uv", path=CLEAN_PATH) is None
    found = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "uv", "--version"], capture_output=True, check=False
    )
    assert found.returncode != 0, "Debian's python3 has a uv module: the test would prove nothing"


def test_make_env_bootstraps_uv_into_a_private_venv(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path)
    done = make(clone, clean_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "externally-managed-environment" not in done.stderr
    assert (clone / ".tools" / "bin" / "uv").exists()
    assert "installing it into .tools/" in done.stderr
    check = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "-c", "import calsync, fastapi_offline"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    # a second run uses the uv in .tools/ and installs nothing
    again = make(clone, clean_env(tmp_path))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "installing" not in again.stderr


def test_a_python_without_venv_stops_with_one_line(tmp_path: Path) -> None:
    """Debian without python3-venv: `python3 -m venv` fails (ensurepip is missing)."""
    path = stub_python(
        tmp_path,
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        '  echo "The virtual environment was not created successfully because ensurepip is '
        'not available." >&2\n'
        "  exit 1\n"
        "fi\n"
        f'exec {SYSTEM_PYTHON} "$@"\n',
    )
    clone = fresh_clone(tmp_path)
    done = make(clone, clean_env(tmp_path, path))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "install python3-venv" in errors[0]
    assert "sudo apt-get install python3-venv" in errors[0]
    assert not (clone / ".tools").exists()
    assert not (clone / ".venv").exists()


def test_an_old_python_stops_with_one_line(tmp_path: Path) -> None:
    path = stub_python(
        tmp_path,
        'case "$*" in\n'
        "  *python_version*) echo 3.9.2 ;;\n"
        "  *) exit 1 ;;\n"  # no uv module, and version_info < (3, 11)
        "esac\n",
    )
    clone = fresh_clone(tmp_path)
    done = make(clone, clean_env(tmp_path, path))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: calsync needs Python 3.11 or newer, python3 is 3.9.2: install python3.11 or "
        "newer, then run make again"
    ], done.stderr
    assert not (clone / ".tools").exists()


def test_a_dry_run_installs_nothing(tmp_path: Path) -> None:
    """`make -n` only says what it would do: looking uv up must not install it."""
    clone = fresh_clone(tmp_path)
    done = make(clone, clean_env(tmp_path), "-n env")
    assert done.returncode == 0, done.stderr
    assert ".tools/bin/uv sync --frozen" in done.stdout
    assert not (clone / ".tools").exists()
