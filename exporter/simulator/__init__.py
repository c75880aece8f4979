"""A fake ITNIO voice API (the simulator) and the ``--demo`` that runs the exporter against it.

Used by the tests, the demo and the benchmarks; the exporter itself never imports it
except for ``--demo``. It imports :mod:`exporter.itnio` (signing, paths) and
:mod:`exporter.config` only.
"""

from .cli import main
from .flows import ScriptedFlow, SimFlow, SimNode, demo_flows, static_flows
from .server import DEMO_API_KEY, DEMO_API_SECRET, DRIFT_VARIANTS, ENVELOPES, FAULT_KINDS, Fault, Simulator, envelope

__all__ = [
    "DEMO_API_KEY",
    "DEMO_API_SECRET",
    "DRIFT_VARIANTS",
    "ENVELOPES",
    "FAULT_KINDS",
    "Fault",
    "ScriptedFlow",
    "SimFlow",
    "SimNode",
    "Simulator",
    "demo_flows",
    "envelope",
    "main",
    "static_flows",
]
