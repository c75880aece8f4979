"""Helpers shared by several test files: a fake clock, a client with its counters, config problems,
Hypothesis strategies for hostile vendor answers, and certificates for the web tests."""

from __future__ import annotations

import base64
import json
import math
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from exporter.config import ConfigError, Credentials, validate_config
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET
from exporter.vendor.client import ItnioClient
from exporter.vendor.decoding import parse_flow_detail
from exporter.vendor.errors import ApiError
from exporter.vendor.model import FlowDetail, NodeDetail
from tests.conftest import parse_samples


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_client(base_url: str, *, secret: str = DEMO_API_SECRET, timeout: float = 2.0, clock=None, retries=0, **kwargs):
    """A client with no retries unless asked, so that one call is one request."""
    telemetry = Telemetry()
    extra = {"clock": clock} if clock else {}
    client = ItnioClient(
        base_url,
        Credentials(DEMO_API_KEY, secret, "test"),
        timeout=timeout,
        max_connections=4,
        max_response_bytes=kwargs.get("max_response_bytes", 1 << 20),
        telemetry=telemetry,
        retries=retries,
        **extra,
    )
    return client, telemetry


def counters(telemetry: Telemetry):
    from prometheus_client import generate_latest

    return parse_samples(generate_latest(telemetry.registry).decode())


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    return info.value.problems


def hostile_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


BIG = 2**63


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([BIG, BIG + 1, -BIG, -BIG - 1, 2**70, -(2**70), 0, -1])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, 1e300])
    | st.text(max_size=20)
    | st.sampled_from(["0", " 0 ", "-16", "NaN", "1e3", "٠", "\u202e", "🙂", "\x00", '"\\\n'])
)


json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


# Field names the decoder looks at, so random dicts hit the interesting paths often.
KEYS = ["code", "status", "msg", "reason", "data", "nodeList", "keyId", "taskId", "nodeStatus", "scriptId",
        "recallInterval", "recallNum", "recallType"]


near_keys = st.sampled_from(KEYS) | st.text(max_size=6)


near_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(near_keys, children, max_size=6),
    max_leaves=30,
)


extra_fields = st.dictionaries(st.text(max_size=8).filter(lambda k: k not in KEYS), json_values, max_size=3)


int64 = st.integers(min_value=-BIG, max_value=BIG)  # the decoder's documented range, bounds included


@st.composite
def valid_bodies(draw) -> tuple[dict[str, Any], FlowDetail]:
    """A success answer in one of the envelope variants, with unknown fields sprinkled anywhere,
    and the FlowDetail it must decode to (built independently of the decoder)."""
    key_ids = draw(st.lists(int64, unique=True, max_size=6))
    raw_nodes, nodes = [], []
    for key_id in key_ids:
        node: dict[str, Any] = {"keyId": key_id, "nodeStatus": draw(int64)}
        expected_optional = {}
        for field in ("taskId", "scriptId"):
            choice = draw(st.sampled_from(["absent", "null", "int"]))
            expected_optional[field] = None
            if choice == "null":
                node[field] = None
            elif choice == "int":
                node[field] = expected_optional[field] = draw(int64)
        node.update(draw(extra_fields))
        raw_nodes.append(node)
        nodes.append(NodeDetail(key_id, expected_optional["taskId"], expected_optional["scriptId"], node["nodeStatus"]))
    data: dict[str, Any] = {
        "status": draw(int64),
        "recallInterval": draw(int64),
        "recallNum": draw(int64),
        "recallType": draw(int64),
    }
    node_list = draw(st.sampled_from(["list", "null", "absent"])) if not raw_nodes else "list"
    if node_list == "list":
        data["nodeList"] = raw_nodes
    elif node_list == "null":
        data["nodeList"] = None
    data.update(draw(extra_fields))
    envelope = draw(
        st.sampled_from([
            {"code": 0, "msg": "success"},
            {"code": "0", "msg": "success"},
            {"code": " 0 "},
            {"code": 0.0},
            {"status": 0, "reason": "ok"},
            {"status": "0", "reason": None},
            {"code": 0, "msg": ["not", "a", "string"]},
        ])
    )
    body = {**envelope, "data": data, **draw(extra_fields)}
    expected = FlowDetail(data["status"], data["recallInterval"], data["recallNum"], data["recallType"], tuple(nodes))
    return body, expected


def decode_or_error(body: Any) -> FlowDetail | ApiError:
    try:
        return parse_flow_detail(body)
    except ApiError as error:
        return error


def roundtrip(body: Any) -> Any:
    """What the client sees after the body went over the wire (NaN/Infinity included)."""
    return json.loads(json.dumps(body, allow_nan=True))


def base_body() -> dict[str, Any]:
    return {
        "code": 0,
        "msg": "success",
        "data": {
            "status": 1,
            "recallInterval": 5,
            "recallNum": 3,
            "recallType": 1,
            "nodeList": [
                {"keyId": 10, "taskId": 700, "nodeStatus": 2, "scriptId": 100},
                {"keyId": 11, "taskId": 701, "nodeStatus": 1, "scriptId": 100},
            ],
        },
    }


MISSING = object()


def mutated(where: str, field: str, new: Any) -> dict[str, Any]:
    body = base_body()
    target = body["data"] if where == "data" else body["data"]["nodeList"][1]
    if new is MISSING:
        del target[field]
    else:
        target[field] = new
    return body


PASSWORD = "correct horse"


# Generated hashes use the lowest cost to keep the tests fast; any cost is accepted.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, written to ``dir``."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.write_server_cert()
        self.ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        self.client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
        self.client = self.client_ca.issue_cert("prometheus@example.com")

    def write_server_cert(self) -> trustme.LeafCert:
        cert = self.ca.issue_cert("127.0.0.1")
        cert.private_key_pem.write_to_path(str(self.dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "server.crt"))
        return cert

    def client_context(self, *, with_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if with_cert:
            self.client.configure_cert(context)
        return context


def write_web_config(directory: Path, text: str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(text)
    return path


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"


USERS = f"basic_auth_users:\n  alice: '{HASH}'\n"


async def get(
    url: str, *, ssl_context: ssl.SSLContext | bool | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    async with aiohttp.ClientSession() as session:
        async with session.get(url, ssl=ssl_context if ssl_context is not None else True, headers=headers or {}) as r:
            await r.read()
            return r.status, dict(r.headers)
