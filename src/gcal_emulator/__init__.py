"""gcal_emulator: an offline, faithful Google OAuth 2.0 + Calendar v3 server.

Imports nothing from calsync. Use `create_app()` in-process (ASGI) or run
`python -m gcal_emulator --host 127.0.0.1 --port 8765`.
"""

from .app import create_app
from .state import Config, World

__all__ = ["Config", "World", "create_app"]
