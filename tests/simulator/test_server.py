"""The simulator's balance endpoint (exporter/simulator/server.py), asked over loopback as the vendor
documents it: a signed GET, a flat answer with the amounts as strings."""

import json
import time

import aiohttp

from exporter.itnio.signing import signed_headers
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET, Fault, static_flows


async def get(url: str, secret: str = DEMO_API_SECRET) -> tuple[int, dict]:
    headers = signed_headers(DEMO_API_KEY, secret, int(time.time()))
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if response.status == 200 else {}


async def test_the_balance_is_served_at_both_documented_paths_and_a_configured_one(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), balance_path="/v4/account/getBalance")
    for path in ("/sms/getBalance", "/v3/getBalance", "/v4/account/getBalance"):
        status, body = await get(sim.base_url + path)
        assert status == 200
        assert body == {"status": "0", "reason": "success", "balance": "100.000000", "gift": "50.000000",
                        "credit": "0.000000"}
    status, _ = await get(sim.base_url + "/voice/getBalance")
    assert status == 404
    assert sim.balance_answers == {("ok", ""): 3} and not sim.answers


async def test_the_balance_checks_the_signature_and_can_be_told_to_fail(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    status, body = await get(sim.base_url + "/sms/getBalance", secret="wrong")
    assert (status, body["status"]) == (200, "-1")
    sim.balance_fault = Fault("api", -13)
    _, body = await get(sim.base_url + "/sms/getBalance")
    assert str(body.get("code", body.get("status"))) == "-13"
    sim.balance_fault = Fault("http", 502)
    status, _ = await get(sim.base_url + "/sms/getBalance")
    assert status == 502
    assert sim.balance_answers == {("api", "-1"): 1, ("api", "-13"): 1, ("http", "502"): 1}
    assert sim.balances_served == []
