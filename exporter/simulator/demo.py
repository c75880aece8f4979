"""`--demo`: the built-in simulator and the exporter in one process, no credentials needed."""

from __future__ import annotations

from ..config import Config, Credentials, validate_config
from .flows import demo_flows
from .server import DEMO_API_KEY, DEMO_API_SECRET, Simulator

DEMO_INTERVAL = "3s"
DEMO_DRIFT_FLOW = 1002
DEMO_CALL_COST = 0.03
DEMO_LOW_THRESHOLD = 120.0


async def start_demo_simulator() -> tuple[Simulator, Config, Credentials]:
    """Start the simulator on a free loopback port; return it with a config that polls it."""
    flows = demo_flows()
    # The flows' calls spend the account (150 at about 0.06 a second): the balance panels move,
    # ItnioBalanceLow fires after some ten minutes, and the spent account is topped up again.
    sim = Simulator(flows=[flow for flow, _ in flows], seed=None, call_cost=DEMO_CALL_COST, top_up_to=100.0)
    # One flow answers as a loose vendor might: numbers as text and a node that cannot be read.
    # The exporter uses the answer and counts the drift (itnio_api_schema_drift_total).
    sim.flow_drift[DEMO_DRIFT_FLOW] = {"string_numbers", "unreadable_node"}
    await sim.start("127.0.0.1", 0)
    config = validate_config(
        {
            "api": {"base_url": sim.base_url, "api_key": DEMO_API_KEY, "timeout": "2s"},
            # The demo's flows start over every minute or two: a finished flow is asked again after
            # 30 s (not the 15 min default), so the page keeps moving.
            "poll": {"interval": DEMO_INTERVAL, "terminal_interval": "30s"},
            # The simulator serves the list and call-detail endpoints too: show what they add.
            "discovery": {"enabled": True, "refresh": "1m"},
            "enrich": {"node_calls": True},
            "balance": {"interval": "5s", "low_threshold": DEMO_LOW_THRESHOLD},
            "flows": [{"key_id": flow.key_id, "name": name} for flow, name in flows],
        }
    )
    return sim, config, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "demo")
