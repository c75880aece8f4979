"""The command line, with the flag names of the Prometheus exporters written in Go."""

from __future__ import annotations

import argparse
import asyncio
import platform
import resource
import signal
import socket
import sys

import structlog

from . import __version__, logs
from .accounts.runtime import load_all
from .config import ConfigError
from .polling.shard import Shard, index_from_hostname
from .service import DEFAULT_LISTEN_ADDRESS, Exporter, parse_listen_address
from .text import safe
from .web.listener import DEFAULT_MAX_CONNECTIONS
from .web.webconfig import WebConfig

log = structlog.get_logger("exporter.cli")

DEMO_LISTEN_ADDRESS = "127.0.0.1:8437"

# Paths the exporter serves itself: metrics there would crash the start or replace a page.
# "/" is allowed: metrics then take the landing page's place.
RESERVED_PATHS = ("/healthz", "/readyz", "/-/reload", "/flows")


def telemetry_path_problem(path: str) -> str | None:
    """Why ``--web.telemetry-path`` cannot be ``path``, or None."""
    if not path.startswith("/"):
        return f"--web.telemetry-path: {path!r} must start with /"
    if path.rstrip("/") in RESERVED_PATHS or path in RESERVED_PATHS:
        return f"--web.telemetry-path: {path!r} is taken by the exporter's own {path.rstrip('/')} page"
    if any(ch in path for ch in "{}?#") or any(ch.isspace() or not ch.isprintable() for ch in path):
        return f"--web.telemetry-path: {path!r} must be a plain URL path (no {{ }} ? # or spaces)"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itnio-exporter",
        description="Prometheus exporter for ITNIO TECH automatic-redial (recall) flows.",
    )
    parser.add_argument("--config.file", dest="config_file", metavar="FILE", help="YAML configuration file")
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate --config.file (and the API secret it names), print the problems and exit",
    )
    parser.add_argument(
        "--api.check",
        dest="api_check",
        action="store_true",
        help="send one signed request to every endpoint --config.file uses, for every account, print what the "
        "API answered (status, envelope, decoded state, drift), the clock offset and a verdict per account, "
        "then an overall one, and exit (0: every account passed)",
    )
    parser.add_argument(
        "--api.check.account",
        dest="api_check_accounts",
        metavar="NAME",
        action="append",
        help="with --api.check: check only this account (repeatable)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        metavar="HOST:PORT",
        default=None,
        help=f"address to serve metrics on (default {DEFAULT_LISTEN_ADDRESS}; "
        f"{DEMO_LISTEN_ADDRESS} with --demo)",
    )
    parser.add_argument(
        "--web.telemetry-path",
        dest="telemetry_path",
        metavar="PATH",
        default="/metrics",
        help="path under which to expose metrics (default %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web config (exporter-toolkit format, as node_exporter's) for TLS and basic auth",
    )
    parser.add_argument(
        "--web.health-unauthenticated",
        dest="health_unauthenticated",
        action="store_true",
        help="serve /healthz and /readyz without basic auth (for kubelet probes); TLS still applies",
    )
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        metavar="N",
        type=_int_arg,
        default=DEFAULT_MAX_CONNECTIONS,
        help="most HTTP connections open at once; at the limit, new ones wait until one closes "
        "(default %(default)s, as Prometheus)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST /-/reload (off: it answers 403, as in Prometheus); SIGHUP always reloads",
    )
    parser.add_argument(
        "--shard.index",
        dest="shard_index",
        metavar="I",
        type=_int_arg,
        default=None,
        help="poll only the flows of shard I (0 .. count-1); see --shard.count",
    )
    parser.add_argument(
        "--shard.count",
        dest="shard_count",
        metavar="N",
        type=_int_arg,
        default=None,
        help="split the flows into N shards by a stable hash of key_id, one per replica (default 1)",
    )
    parser.add_argument(
        "--shard.from-hostname",
        dest="shard_from_hostname",
        action="store_true",
        help="take --shard.index from the host name's -I suffix (a StatefulSet pod name)",
    )
    parser.add_argument("--log.level", dest="log_level", choices=logs.LEVELS, default="info")
    parser.add_argument("--log.format", dest="log_format", choices=logs.FORMATS, default="logfmt")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in simulator of the ITNIO API: no config or credentials needed",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"itnio-exporter, version {__version__} (python {platform.python_version()})",
    )
    return parser


def _int_arg(text: str) -> int | str:
    """An integer flag value; anything else is kept as text for a one-line error later."""
    try:
        return int(text)
    except ValueError:
        return text


def _shard(args: argparse.Namespace, hostname: str) -> tuple[Shard | None, list[str]]:
    """The shard from --shard.index/--shard.count/--shard.from-hostname, or the problems."""
    problems = []
    count, index = args.shard_count, args.shard_index
    if count is None:
        count = 1
    if not isinstance(count, int) or count < 1:
        problems.append(f"--shard.count: {count!r} must be a whole number of at least 1")
    if args.shard_from_hostname:
        if index is not None:
            problems.append("--shard.from-hostname: give either it or --shard.index, not both")
        else:
            try:
                index = index_from_hostname(hostname)
            except ValueError as exc:
                problems.append(f"--shard.from-hostname: {exc}")
    if index is None:
        index = 0
    if not isinstance(index, int) or (isinstance(count, int) and not 0 <= index < max(count, 1)):
        upper = f"{count - 1}" if isinstance(count, int) and count >= 1 else "count-1"
        problems.append(f"--shard.index: {index!r} must be between 0 and {upper} (--shard.count {count})")
    if problems:
        return None, problems
    return Shard(index, count), []


def _fail(problems: list[str]) -> int:
    for line in problems:
        print(line, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = []
    if args.demo and (args.config_file or args.config_check or args.api_check):
        problems.append("--demo: runs without --config.file, --config.check and --api.check")
    if args.config_check and args.api_check:
        problems.append("--api.check: give either it or --config.check (--api.check checks the config first)")
    if args.api_check_accounts and not args.api_check:
        problems.append("--api.check.account: goes with --api.check")
    if not args.demo and not args.config_file:
        problems.append("--config.file: required (or run --demo to try the exporter without credentials)")
    path_problem = telemetry_path_problem(args.telemetry_path)
    if path_problem is not None:
        problems.append(path_problem)
    listen = args.listen_address or (DEMO_LISTEN_ADDRESS if args.demo else DEFAULT_LISTEN_ADDRESS)
    try:
        parse_listen_address(listen)
    except ValueError as exc:
        problems.append(f"--web.listen-address: {exc}")
    if not isinstance(args.max_connections, int) or args.max_connections < 1:
        problems.append(f"--web.max-connections: {args.max_connections!r} must be a whole number of at least 1")
    shard, shard_problems = _shard(args, socket.gethostname())
    problems.extend(shard_problems)
    if problems:
        return _fail(problems)

    logs.configure(args.log_level, args.log_format)
    web_config, problems = None, []
    if args.web_config_file:
        try:
            web_config = WebConfig(args.web_config_file)
        except ConfigError as exc:
            problems.extend(exc.problems)
    web = {
        "web_config": web_config,
        "health_unauthenticated": args.health_unauthenticated,
        "max_connections": args.max_connections,
        "enable_lifecycle": args.enable_lifecycle,
    }
    if args.demo:
        return _fail(problems) if problems else asyncio.run(_serve_demo(listen, args.telemetry_path, web))
    try:
        config, credentials = load_all(args.config_file)
    except ConfigError as exc:
        problems = exc.problems + problems
    if problems:
        return _fail(problems)
    if args.config_check:
        for account in config.accounts_resolved:
            extras = "".join(
                f", {name}" for name, on in (("discovery on", account.discovery.enabled),
                                             ("node calls on", account.enrich.node_calls)) if on
            )
            where = "" if config.single_account else f" account {account.name}:"
            print(f"{args.config_file}:{where} OK ({len(account.flows)} flows{extras})")
        if web_config is not None:
            print(f"{args.web_config_file}: OK (TLS {'on' if web_config.tls_enabled else 'off'}, {len(web_config.users)} users)")
        return 0
    if args.api_check:
        from .apicheck import api_check

        only = args.api_check_accounts or []
        names = [account.name for account in config.accounts_resolved]
        unknown = [name for name in dict.fromkeys(only) if name not in names]
        if unknown:
            quoted = ", ".join(f"'{safe(name, 80)}'" for name in unknown)
            return _fail([f"--api.check.account: no account {quoted} in {args.config_file} "
                          f"(its accounts: {', '.join(names)})"])
        return asyncio.run(api_check(config, credentials, sys.stdout, only))
    exporter = Exporter(
        config,
        credentials,
        listen_address=listen,
        telemetry_path=args.telemetry_path,
        config_path=args.config_file,
        shard=shard,
        **web,
    )
    return asyncio.run(_serve(exporter))


async def _wait_for_signal(exporter: Exporter) -> None:
    """Until SIGTERM or SIGINT; SIGHUP reloads the config, as Prometheus does (SIGHUPs that
    arrive during a reload are merged into one more)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, exporter.request_reload)
    await stop.wait()


def raise_open_files_limit() -> None:
    """Raise the soft limit on open descriptors to the hard limit, as Go's runtime does, and log both."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # an infinite hard limit the kernel caps lower
            pass
    fields = {"raised_from": _limit(before)} if before != soft else {}
    log.info("open_files_limit", soft=_limit(soft), hard=_limit(hard), **fields)


def _limit(value: int) -> int | str:
    return "unlimited" if value == resource.RLIM_INFINITY else value


async def _serve(exporter: Exporter) -> int:
    raise_open_files_limit()
    try:
        await exporter.start()
    except OSError as exc:
        log.error("cannot_listen", address=f"{exporter.host or ''}:{exporter.port}", error=exc.strerror or str(exc))
        await exporter.stop()
        return 1
    await _wait_for_signal(exporter)
    log.info("stopping")
    await exporter.stop()
    return 0


async def _serve_demo(listen: str, telemetry_path: str, web: dict | None = None) -> int:
    from .simulator.demo import start_demo_simulator

    sim, config, credentials = await start_demo_simulator()
    exporter = Exporter(config, credentials, listen_address=listen, telemetry_path=telemetry_path, **(web or {}))
    scheme = "https" if exporter.web_config is not None and exporter.web_config.tls_enabled else "http"
    log.info("demo", simulator=sim.base_url, metrics=f"{scheme}://{listen}{telemetry_path}")
    try:
        return await _serve(exporter)
    finally:
        await sim.stop()


if __name__ == "__main__":
    sys.exit(main())
