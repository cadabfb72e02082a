"""`alarm serve`: build a model and serve it over HTTP (uvicorn)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alarm.presets import build_model
    from alarm.serving.app import ServedModel, create_app
    from alarm.serving.protocol import ServerLimits

    model = build_model(args.preset).eval()
    limits = ServerLimits(
        max_new_tokens=args.max_new_tokens, thinking_budget=args.thinking_budget, max_audio_seconds=args.max_seconds
    )
    served = ServedModel(model, args.served_model_name or args.preset, limits)
    app = create_app(served, max_request_bytes=int(args.max_request_mb * 2**20))
    log.info("serving %s on http://%s:%d/v1", served.name, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)  # SIGTERM: graceful stop
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``."""
    p = sub.add_parser("serve", help="OpenAI-compatible /v1/chat/completions with input_audio parts")
    p.add_argument("--preset", required=True, help="preset name, preset JSON file, or saved model directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", default=None, help="the model name clients send (default: --preset)")
    p.add_argument("--thinking-budget", type=int, default=-1, help="default reasoning budget (-1: unlimited)")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="cap on max_tokens per request")
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio")
    p.add_argument("--max-request-mb", type=float, default=64.0, help="refuse larger request bodies (413)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=_serve)
