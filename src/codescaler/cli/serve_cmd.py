"""``codescaler serve``: the reward model behind HTTP (``/score``, OpenRLHF ``/get_reward``, ``/health``, ``/info``).

The model is loaded before the port is bound, so a bad ``--rm`` fails fast with exit 2. Binds
127.0.0.1 by default: the server has no authentication, so exposing it is an explicit choice (``--host
0.0.0.0``). SIGTERM (or Ctrl-C) stops accepting connections, lets in-flight requests finish (up to
``--graceful-timeout`` seconds) and drains the scoring queue; after a SIGTERM the process exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import signal
from typing import Any

from codescaler.cli import options
from codescaler.errors import InputError
from codescaler.extras import require

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a reward model over HTTP (native /score and OpenRLHF /get_reward)",
        description="Serve a reward model over HTTP: POST /score, POST /get_reward (OpenRLHF --remote_rm_url), "
        "GET /health, GET /info. Concurrent requests are micro-batched into the model.",
    )
    options.add_rm(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s, local only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=64,
                        help="items gathered from concurrent requests into one model call (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long a batch waits for more requests (default: %(default)s)")
    parser.add_argument("--max-items-per-request", type=int, default=65_536,
                        help="items (or OpenRLHF queries) per request; larger requests are fed to the model in "
                        "chunks of --max-batch, so this only bounds memory (default: %(default)s)")
    parser.add_argument("--max-chars-per-item", type=int, default=200_000,
                        help="prompt + response characters per item (default: %(default)s)")
    parser.add_argument("--max-body-mb", type=float, default=64.0,
                        help="request body size limit in MiB, chunked bodies included (default: %(default)s)")
    parser.add_argument("--max-queue", type=int, default=1024,
                        help="waiting requests before answering 503 (default: %(default)s)")
    parser.add_argument("--graceful-timeout", type=float, default=30.0,
                        help="seconds in-flight requests get to finish on shutdown (default: %(default)s)")
    options.add_scorer_options(parser)
    parser.set_defaults(func=run)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise InputError(f"port must be in 1..65535, got {port}", field="port")


def _finite(value: float, flag: str, low: float, high: float = math.inf) -> float:
    # argparse's float() takes "nan" and "inf" (the batching window: ServerSettings.validate).
    if not (math.isfinite(value) and low <= value <= high):
        bound = f"in {low:g}..{high:g}" if math.isfinite(high) else f">= {low:g}"
        raise InputError(f"must be a finite number {bound}, got {value:g}", field=flag)
    return value


def run(args: argparse.Namespace) -> int:
    # Every flag is checked before the heavy imports and the model load: a bad value fails in a second.
    from codescaler.server.settings import ServerSettings

    _check_port(args.port)
    _finite(args.graceful_timeout, "graceful-timeout", 0.0)
    _finite(args.max_body_mb, "max-body-mb", 0.001, 1024.0)  # in MiB, converted to bytes below
    settings = ServerSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                              max_items_per_request=args.max_items_per_request,
                              max_chars_per_item=args.max_chars_per_item, max_queue=args.max_queue,
                              max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                              drain_timeout_s=max(args.graceful_timeout, 1.0))
    settings.validate()

    require("server", "fastapi", "pydantic", "uvicorn")  # one line naming the extra, before the model loads
    import uvicorn

    from codescaler.scorer import Scorer
    from codescaler.server.app import create_app

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        logger.warning("binding %s: the reward server has no authentication; anyone who can reach this "
                       "address can use it", args.host)
    scorer = Scorer.load(args.rm, **options.scorer_kwargs(args))
    app = create_app(scorer, settings)
    # keep-alive 75 s (uvicorn's default is 5 s): trainers reuse connections between rollout steps, and a
    # server closing an idle connection just as the client reuses it shows up as a client ReadError.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=args.graceful_timeout, timeout_keep_alive=75,
                            lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal against the handler that was
    # installed before it ran; the default handler would kill us with status -15 after a clean drain.
    # A no-op handler here turns that re-raise into a normal return (exit 0). Installed only now, so a
    # SIGTERM while the model loads still stops the process at once.
    terminated: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started and not terminated:
        raise InputError(f"could not start the server on {args.host}:{args.port} (see the log above)",
                         field="port", fix="pick a free port with --port")
    logger.info("reward server exited%s", " after SIGTERM" if terminated else "")
    return 0
