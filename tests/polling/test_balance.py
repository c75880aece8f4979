"""The balance poller (exporter/polling/balance.py) against the simulator: what it publishes, how a
failure keeps the last balance until it is stale, and how a new config applies."""

from exporter.config import validate_config
from exporter.polling.balance import BalancePoller, BalanceState
from exporter.simulator import Fault, static_flows
from tests.conftest import exporter_config
from tests.helpers import make_client


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_failed_query_keeps_the_last_balance_until_three_intervals_old(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), balance=80, gift=5, credit=1)
    client, _ = make_client(sim.base_url)
    clock, published = Clock(), []
    poller = BalancePoller(lambda: client, published.append, clock=clock)
    config = validate_config(exporter_config(sim, balance={"interval": "1m"}))
    try:
        await poller.apply(config, run=False)
        assert published == [BalanceState(enabled=True, interval=60.0, stale_after=180.0)]
        assert await poller.poll_once()
        state = published[-1]
        assert state.balance is not None and dict(state.balance.amounts) == {"actual": 80, "gift": 5, "credit": 1}
        assert state.last_success == clock.now

        sim.balance_fault = Fault("http", 502)
        clock.now += 60
        assert not await poller.poll_once()
        failed = published[-1]
        assert failed.balance == state.balance and failed.last_success == state.last_success
        assert failed.last_error is not None and failed.last_error.code == "502"
        assert failed.visible(state.last_success + 180) == state.balance, "kept up to 3 x interval"
        assert failed.visible(state.last_success + 181) is None, "then no longer shown"

        sim.balance_fault = None
        clock.now += 200
        assert await poller.poll_once()
        assert published[-1].visible(clock.now) is not None and published[-1].last_error is None
    finally:
        await client.close()
    assert sim.balance_answers == {("ok", ""): 2, ("http", "502"): 1}


async def test_a_new_config_applies_its_threshold_and_staleness_and_off_clears_the_balance(make_sim):
    sim = await make_sim(flows=static_flows(1, 1))
    client, _ = make_client(sim.base_url)
    published: list[BalanceState] = []
    poller = BalancePoller(lambda: client, published.append)
    try:
        await poller.apply(validate_config(exporter_config(sim, balance={"interval": "1m"})), run=False)
        assert await poller.poll_once()
        await poller.apply(validate_config(exporter_config(
            sim, balance={"interval": "2m", "low_threshold": 25, "path": "/v3/getBalance"})), run=False)
        state = published[-1]
        assert (state.low_threshold, state.stale_after) == (25, 360.0)
        assert state.balance is not None, "the balance read so far stays"
        assert await poller.poll_once()  # at the new path: the simulator serves both documented ones
        await poller.apply(validate_config(exporter_config(sim, balance={"enabled": False})), run=False)
        assert published[-1] == BalanceState()
        assert not await poller.poll_once(), "off: nothing is sent"
    finally:
        await client.close()
    assert sim.balance_answers == {("ok", ""): 2}


async def test_the_simulator_spends_the_balance_as_its_flows_place_calls(make_sim):
    sim = await make_sim(flows=static_flows(1, 1), balance=10, gift=2, call_cost=0.5)
    client, _ = make_client(sim.base_url)
    try:
        sim.place_calls(4)  # 2.0 spent from the actual balance
        first = await client.get_balance()
        sim.place_calls(20)  # 10.0: the 8 left, then 2 of the gift
        second = await client.get_balance()
    finally:
        await client.close()
    assert first.amount("actual") == 8 and first.amount("gift") == 2
    assert second.amount("actual") == 0 and second.amount("gift") == 0
    assert sim.balances_served == [{"balance": 8, "gift": 2, "credit": 0}, {"balance": 0, "gift": 0, "credit": 0}]
