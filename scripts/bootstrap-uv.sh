#!/bin/sh
# Makes sure uv can run, for `make env` (and so `make run` / `make test`) on a fresh machine.
#
# Uses, in order: uv on PATH; python3's uv module; uv in .tools/ (a private virtual environment
# of this checkout). Without any, it creates .tools/ with `python3 -m venv` and installs uv there
# with that venv's pip: Debian and Ubuntu refuse pip installs into the system Python (PEP 668),
# and this never uses --break-system-packages. When that cannot work it stops with one line
# saying what to install. Prints the uv command on stdout; progress goes to stderr.
# `--find` only prints the command (.tools/bin/uv when there is none yet) and installs nothing.
set -eu

TOOLS="${CALSYNC_TOOLS_DIR:-.tools}"
UV_SPEC="uv>=0.5"

fail() {
	echo "error: $*" >&2
	exit 1
}

if command -v uv >/dev/null 2>&1; then
	command -v uv
	exit 0
fi
if command -v python3 >/dev/null 2>&1 && python3 -m uv --version >/dev/null 2>&1; then
	echo "python3 -m uv"
	exit 0
fi
if [ -x "$TOOLS/bin/uv" ] || [ "${1:-}" = "--find" ]; then
	echo "$TOOLS/bin/uv"
	exit 0
fi

command -v python3 >/dev/null 2>&1 ||
	fail "calsync needs Python 3.11 or newer: install python3 (Debian/Ubuntu: sudo apt-get install python3 python3-venv), then run make again"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
	fail "calsync needs Python 3.11 or newer, python3 is $(python3 -c 'import platform; print(platform.python_version())'): install python3.11 or newer, then run make again"

echo "uv not found: installing it into $TOOLS/ (a private virtual environment)" >&2
rm -rf "$TOOLS"
if ! python3 -m venv "$TOOLS" >/dev/null 2>&1; then
	rm -rf "$TOOLS"
	fail "python3 cannot create virtual environments: install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv), then run make again"
fi
# the system's certificates, as uv uses them (UV_SYSTEM_CERTS): a proxy's own CA is trusted
cert=""
if [ -z "${PIP_CERT:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
	cert="--cert=/etc/ssl/certs/ca-certificates.crt"
fi
# shellcheck disable=SC2086 # $cert is one option or nothing
if ! "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check $cert "$UV_SPEC" >&2; then
	rm -rf "$TOOLS"
	fail "could not install uv into $TOOLS/ with pip (see above; is PyPI reachable?); or install uv yourself: https://docs.astral.sh/uv/getting-started/installation/"
fi
echo "$TOOLS/bin/uv"
