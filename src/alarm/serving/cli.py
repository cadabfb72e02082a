"""`alarm serve`: build a model and serve it over HTTP (uvicorn), draining on SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from typing import Any

from alarm import official_texts
from alarm.generation_vllm import add_vllm_arguments

log = logging.getLogger(__name__)


def _draining_server(config: Any, drain: Any, timeout_s: float) -> Any:
    """A uvicorn server whose first SIGTERM/SIGINT drains: new requests get 503, those in flight finish.

    Once none is in flight (or ``timeout_s`` passed) uvicorn's own graceful exit runs; a
    second signal exits at once.
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if drain.draining:
                return super().handle_exit(sig, frame)
            drain.draining = True
            log.info("draining: %d requests in flight, new ones get 503", drain.in_flight)

            def finish() -> None:
                if not drain.wait_idle(timeout_s):
                    log.warning("drain timeout (%.0f s): stopping with %d requests in flight", timeout_s,
                                drain.in_flight)  # fmt: skip
                super(DrainingServer, self).handle_exit(sig, frame)

            threading.Thread(target=finish, name="alarm-drain", daemon=True).start()

    return DrainingServer(config)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from alarm.presets import build_model
    from alarm.serving.app import Drain, ServedModel, create_app
    from alarm.serving.engine import EngineConfig
    from alarm.serving.protocol import ServerLimits

    logging.getLogger("alarm.serving").setLevel(args.log_level.upper())  # one JSON access line per request
    try:
        texts = official_texts.resolve(args.official_texts, ["ensemble", "thinking"])
    except official_texts.OfficialTextError as err:
        print(f"alarm serve: {err}", file=sys.stderr)
        return 2
    model = official_texts.apply_to_model(build_model(args.preset).eval(), texts)
    limits = ServerLimits(
        max_new_tokens=args.max_new_tokens,
        thinking_budget=args.thinking_budget,
        max_audio_seconds=args.max_seconds,
        max_text_chars=args.max_text_chars,
        closing_text=texts.text("thinking.closing") if texts is not None else None,
    )
    engine = EngineConfig(max_batch_size=args.max_batch_size, max_wait_s=args.max_wait_ms / 1000,
                          max_queue=args.max_queue)  # fmt: skip
    served = ServedModel(model, args.served_model_name or args.preset, limits)
    backend = None
    if args.engine == "vllm":
        from alarm.generation_vllm import settings_from_args
        from alarm.serving.engine_vllm import VLLMServingEngine

        backend = VLLMServingEngine(model, settings_from_args(args), engine)
    drain = Drain()
    app = create_app(served, max_request_bytes=int(args.max_request_mb * 2**20), engine=engine, drain=drain,
                     backend=backend)  # fmt: skip
    log.info("serving %s on http://%s:%d/v1 (batches of up to %d)", served.name, args.host, args.port,
             engine.max_batch_size)  # fmt: skip
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    _draining_server(config, drain, args.drain_timeout).run()
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``."""
    p = sub.add_parser("serve", help="OpenAI-compatible /v1/chat/completions with input_audio parts")
    p.add_argument(
        "--preset",
        required=True,
        help="preset name, preset JSON file, saved model directory, or official:<hub id or dir>",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="default %(default)s")
    p.add_argument("--served-model-name", default=None, help="the model name clients send (default: --preset)")
    p.add_argument(
        "--thinking-budget",
        type=int,
        default=-1,
        help="reasoning budget of a request that sets none (default -1: unlimited)",
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=2048, help="cap on max_tokens per request (default %(default)s)"
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio (default %(default)s)")
    p.add_argument(
        "--max-text-chars", type=int, default=200_000, help="refuse requests with more text (default %(default)s)"
    )
    p.add_argument(
        "--max-request-mb", type=float, default=64.0, help="refuse larger request bodies, 413 (default %(default)s)"
    )
    p.add_argument(
        "--max-batch-size", type=int, default=32, help="requests answered together in one batch (default %(default)s)"
    )
    p.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill up (default %(default)s)"
    )
    p.add_argument(
        "--max-queue", type=int, default=256, help="requests that may wait; more get 429 (default %(default)s)"
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds SIGTERM waits for requests in flight (default %(default)s)",
    )
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    official_texts.add_argument(p)  # ALARM-E's instructions and the closing sentence
    add_vllm_arguments(p)  # --engine vllm: vLLM's continuous batching from the spliced prompt embeddings
    p.set_defaults(func=_serve)
