"""`python -m gcal_emulator` / `gcal-emulator`: serve the emulator over HTTP."""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app
from .state import Config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="gcal-emulator",
        description="An offline Google OAuth 2.0 + Calendar v3 server for tests and sandboxes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--state", metavar="FILE", help="load state from FILE and save it on exit")
    parser.add_argument(
        "--allow-http-webhooks",
        action="store_true",
        help="deliver push notifications to http:// addresses (Google needs https)",
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=3600,
        help="access-token lifetime in seconds (default 3600, as Google)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    config = Config(access_token_ttl=args.token_ttl, allow_http_webhooks=args.allow_http_webhooks)
    app = create_app(config=config, state_file=args.state)
    base = f"http://{args.host}:{args.port}"
    print(f"gcal_emulator serving Google OAuth + Calendar v3 on {base}")
    print(f"  Calendar API root:  {base}/calendar/v3   (batch: {base}/batch/calendar/v3)")
    print(f"  OAuth:              {base}/o/oauth2/v2/auth  {base}/token  {base}/revoke")
    print(f"  Control API:        {base}/emulator/v1   (see docs/emulator.md)")
    print(f'  Try: curl -X POST {base}/emulator/v1/accounts -d \'{{"email":"ada@example.com"}}\'')
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
