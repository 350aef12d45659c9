# The two set-up commands: `make run` and `make test`. Both create the environment themselves;
# a fresh machine needs only make and Python >= 3.11 with venv (Debian/Ubuntu: python3-venv).
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# a machine that sets PYTHONDONTWRITEBYTECODE (this project's CI image does) compiles every module
# again in every process: about 3 CPU-seconds per calsync, worker or emulator process the tests
# start (tests/jobs/test_workers.py: 38 → 23 CPU-s with it unset); Python's own caches are
# git-ignored
unexport PYTHONDONTWRITEBYTECODE
# uv trusts the system's certificate store (so a company proxy's CA works as in curl and apt);
# UV_NATIVE_TLS is the older uv's name for it
export UV_SYSTEM_CERTS ?= 1
export UV_NATIVE_TLS ?= 1
# uv on PATH, python3's uv module, or .tools/bin/uv (installed by `make uv` when neither exists);
# looked up once (installing nothing), after the uv target ran
UV = $(or $(_UV),$(eval _UV := $(shell scripts/bootstrap-uv.sh --find))$(_UV))
HOST ?= 127.0.0.1
PORT ?= 8765
PYTEST_ARGS ?=

.PHONY: uv env run test lint typecheck bench emulator chromium

# never `pip install` into the system Python (PEP 668): see scripts/bootstrap-uv.sh
uv:
	@scripts/bootstrap-uv.sh >/dev/null

env: uv
	$(UV) sync --frozen --quiet

# calsync in sandbox mode (no Google credentials): the emulator alongside, a demo company, and
# the URL, logins and an admin API key printed; data in ./data (delete it to start over)
run: env
	$(UV) run --frozen calsync migrate
	$(UV) run --frozen calsync serve --host $(HOST) --port $(PORT) --no-migrate

# the Google emulator alone
emulator: env
	$(UV) run --frozen python -m gcal_emulator --host $(HOST) --port $(PORT)

# the browser tests drive Debian's Chromium (never Playwright's own download)
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: env chromium
	$(UV) run --frozen ruff check src tests bench examples
	$(UV) run --frozen ruff format --check src tests bench examples
	$(UV) run --frozen mypy
	$(UV) run --frozen pytest -n 2 $(PYTEST_ARGS)

lint: env
	$(UV) run --frozen ruff check src tests bench examples
	$(UV) run --frozen ruff format --check src tests bench examples

typecheck: env
	$(UV) run --frozen mypy

# whole-run benchmarks, printed side by side (see bench/*.py for options); budget.py runs 200
# calendars here: the issue's 10,000 (`bench/budget.py --calendars 10000 --days 2 --broken 0.01`)
# takes about an hour on 2 cores (docs/deploy.md, "Google's request budget")
bench: env
	$(UV) run --frozen python bench/emulator.py
	$(UV) run --frozen python bench/google_client.py
	$(UV) run --frozen python bench/import.py --rounds 2
	$(UV) run --frozen python bench/import.py --rounds 2 --google-latency-ms 150
	$(UV) run --frozen python bench/latency.py
	$(UV) run --frozen python bench/latency.py --direction crm --bindings 100 --changes 30 --google-latency-ms 150
	$(UV) run --frozen python bench/webhook_latency.py
	$(UV) run --frozen python bench/webhook_latency.py --changes 100 --kill-every 10
	$(UV) run --frozen python bench/budget.py --days 2
	$(UV) run --frozen python bench/api_load.py
	$(UV) run --frozen python bench/api_cpu.py
	$(UV) run --frozen python bench/incremental.py
	$(UV) run --frozen python bench/incremental.py --sizes 1000,50000 --changes 12
	$(UV) run --frozen python bench/throughput.py
