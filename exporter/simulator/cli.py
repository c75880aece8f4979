"""``itnio-exporter-simulator``: the simulator alone, on loopback, for trying dashboards and load."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from .flows import demo_flows, static_flows
from .server import DEMO_API_KEY, DEMO_API_SECRET, ENVELOPES, FAULT_KINDS, Simulator


def _parse_faults(specs: list[str]) -> dict[str, float]:
    rates = {}
    for spec in specs:
        kind, _, rate = spec.partition("=")
        if kind not in FAULT_KINDS:
            raise argparse.ArgumentTypeError(f"--fault: unknown kind {kind!r} (one of {', '.join(FAULT_KINDS)})")
        rates[kind] = float(rate)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="itnio-exporter-simulator", description="A fake ITNIO voice API on loopback, for tests and demos."
    )
    parser.add_argument("--listen", default="127.0.0.1:8418", help="HOST:PORT to listen on (default %(default)s)")
    parser.add_argument("--api-key", default=DEMO_API_KEY)
    parser.add_argument("--api-secret", default=DEMO_API_SECRET)
    parser.add_argument("--flows", type=int, default=0, help="serve N static flows with keyIds 1..N (default: the demo flows)")
    parser.add_argument("--nodes", type=int, default=10, help="nodes per static flow")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                        help=f"inject a fault at a rate in 0..1; KIND is one of {', '.join(FAULT_KINDS)}")
    parser.add_argument("--envelope", choices=("mixed", *ENVELOPES), default="mixed")
    parser.add_argument("--call-cost", type=float, default=0.0,
                        help="balance spent per call placed (a call a second per in-progress node)")
    parser.add_argument("--balance-path", default=None,
                        help="serve the balance at this path too (besides /sms/getBalance and /v3/getBalance)")
    args = parser.parse_args(argv)
    try:
        rates = _parse_faults(args.fault)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        print(f"itnio-exporter-simulator: {exc}", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    flows = static_flows(args.flows, args.nodes) if args.flows else [flow for flow, _ in demo_flows()]
    sim = Simulator(api_key=args.api_key, api_secret=args.api_secret, flows=flows, latency=args.latency,
                    fault_rates=rates, envelope_variant=args.envelope, seed=None, call_cost=args.call_cost,
                    balance_path=args.balance_path)

    async def serve() -> None:
        port_number = await sim.start(host.strip("[]") or "127.0.0.1", int(port))
        print(f"simulator listening on {host or '127.0.0.1'}:{port_number} with {len(sim.flows)} flows", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await sim.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
