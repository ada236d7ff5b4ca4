"""Command line: argv and environment → Config → a running server. Nothing else lives here."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING

from fastgw import __version__
from fastgw.analytics import terminal
from fastgw.config import Config, ConfigError, load
from fastgw.keys import cli as keys_cli

if TYPE_CHECKING:
    from fastgw.requestlog.paths import LogPaths


def version_string() -> str:
    from fastgw import _compiled, _native

    kind = "Cython extensions" if _native.NATIVE else "pure-Python twins (extensions not built)"
    used, total = _compiled.report()
    return f"fastgw {__version__} (native: {_native.IMPLEMENTATION}, {kind}; compiled modules: {used}/{total})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastgw", description="A fast LLM gateway.")
    parser.add_argument("--version", action="version", version=version_string())
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", "-c", help="YAML config file (defaults serve without one)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--workers", type=int, help="override server.workers")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")
    keys_cli.add_parser(sub)
    terminal.add_parsers(sub)
    args = parser.parse_args(argv)

    if args.command == "keys":
        return keys_cli.run(args)
    if args.command in ("stats", "tail"):
        return terminal.run(args)

    if args.command == "check-config":
        try:
            load(args.file)
        except ConfigError as exc:
            print(f"fastgw: {exc}", file=sys.stderr)
            return 2
        print(f"{args.file}: ok")
        return 0

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load(args.config)
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers)) if v is not None}
        if overrides:
            config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
            from fastgw.config import validate

            validate(config)
    except ConfigError as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 2
    return serve_forever(config)


def serve_forever(config: Config) -> int:
    from fastgw.server.supervisor import Supervisor

    s = config.server
    workers = s.workers
    try:  # fail fast with a clear message rather than N workers dying on a taken port
        probe = socket.socket(socket.AF_INET6 if ":" in s.host else socket.AF_INET)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if workers > 1:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((s.host, s.port))
        probe.close()
    except OSError as exc:
        print(f"fastgw: cannot listen on {s.host}:{s.port}: {exc.strerror}", file=sys.stderr)
        return 1
    banner = f"fastgw {__version__} listening on http://{s.host}:{s.port} ({workers} worker{'s' * (workers > 1)})"
    from fastgw.stages.auth import exposure_warning

    if (warning := exposure_warning(config)) is not None:
        logging.getLogger("fastgw").warning(warning)
    if not config.logging.enabled and workers == 1:
        run_worker(config, 0, reuse_port=False, banner=banner)  # nothing to supervise: serve in-process
        return 0
    from fastgw.requestlog.paths import LogPaths

    paths = LogPaths.for_config(config) if config.logging.enabled else None
    exporter = None
    locks: list[int] = []
    if paths is not None:
        from fastgw.requestlog.paths import FolderInUse

        try:
            locks = paths.lock()  # held, through the children that inherit it, until the last of them exits
        except FolderInUse as exc:
            print(f"fastgw: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:  # a folder that refuses locks (some network filesystems) or our file
            print(f"fastgw: cannot lock the request-log folders {paths.run_dir} and {paths.spill_root} "
                  f"(logging.run_dir, logging.spill_dir): {exc}", file=sys.stderr)
            return 1
        from fastgw.requestlog.exporter import run_exporter

        supervisor = os.getpid()

        def exporter() -> None:
            run_exporter(config, paths, workers, supervisor)

    print(banner, file=sys.stderr, flush=True)
    try:
        return Supervisor(
            workers, lambda index: run_worker(config, index, reuse_port=workers > 1, paths=paths),
            s.graceful_timeout, exporter=exporter,
        ).run()
    finally:
        if paths is not None and config.logging.exporter_idle_cgroup:
            from fastgw.requestlog import idle_cgroup

            idle_cgroup.remove(os.getpid())  # the exporter's, empty once it exited
        for fd in locks:
            os.close(fd)


def _freeze_startup_objects() -> None:
    """Move what start-up built (modules, config, tables: tens of thousands of objects) out of the
    garbage collector's reach. They live as long as the worker, yet each full collection walked them
    all again, a pause of milliseconds in the middle of requests every few seconds under load."""
    gc.collect()
    gc.freeze()


def run_worker(
    config: Config, index: int, reuse_port: bool, banner: str | None = None, paths: LogPaths | None = None
) -> None:
    import uvloop

    from fastgw.server.server import Server, make_listen_socket

    s = config.server
    sock = make_listen_socket(s.host, s.port, s.backlog, reuse_port)
    buffer = None

    async def run() -> None:
        nonlocal buffer
        server = Server(config)
        if paths is not None:
            from fastgw.requestlog.buffer import RecordBuffer
            from fastgw.requestlog.logger import RequestLogger

            buffer = RecordBuffer(paths.ring_file(index), paths.spill_dir(index), int(config.logging.ring_size))
            server.state.logger = server.gateway.logger = RequestLogger(config.logging, buffer, index)
        _freeze_startup_objects()
        await server.serve(sock, on_ready=(lambda: print(banner, file=sys.stderr, flush=True)) if banner else None)

    try:
        uvloop.run(run())
    finally:
        if buffer is not None:
            buffer.close()
