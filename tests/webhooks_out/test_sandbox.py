"""The sandbox (`calsync serve` without Google settings) lets webhooks go to loopback, where a
CRM being tried out runs; an operator's explicit setting still wins."""

from __future__ import annotations

from pathlib import Path

from calsync.cli.sandbox import Sandbox
from calsync.settings import Settings


def test_sandbox_allows_loopback_targets(tmp_path: Path) -> None:
    sandbox = Sandbox.start(Settings(data_dir=tmp_path, mode="sandbox"), host="127.0.0.1", port=1)
    try:
        assert sandbox.settings.webhook_allow_private is True
    finally:
        sandbox.stop()
    explicit = Settings(data_dir=tmp_path, mode="sandbox", webhook_allow_private=False)
    sandbox = Sandbox.start(explicit, host="127.0.0.1", port=1)
    try:
        assert sandbox.settings.webhook_allow_private is False
    finally:
        sandbox.stop()
    assert Settings(data_dir=tmp_path).webhook_allow_private is False  # production default
