"""Sharding (exporter/polling/shard.py): an exact, stable partition of the flows, in the poller too."""

import asyncio
import random

import pytest

from exporter.config import (
    validate_config,
)
from exporter.polling.poller import Poller
from exporter.polling.shard import Shard, index_from_hostname, stable_hash
from exporter.simulator import static_flows
from tests.conftest import exporter_config, scrape, value


class Flow:
    def __init__(self, key_id):
        self.key_id = key_id


@pytest.mark.parametrize("count", [1, 2, 3, 7, 16])
def test_any_set_of_flows_is_partitioned_exactly(count):
    rng = random.Random(count)
    for _ in range(20):
        keys = rng.sample(range(1, 10**9), rng.randint(0, 400)) + list(range(1, rng.randint(1, 50)))
        keys = list(dict.fromkeys(keys))
        flows = [Flow(k) for k in keys]
        parts = [Shard(i, count).select(flows) for i in range(count)]
        chosen = [f.key_id for part in parts for f in part]
        assert sorted(chosen) == sorted(keys)  # none missing, none twice
        for i, part in enumerate(parts):  # and each replica keeps the config's order
            assert [f.key_id for f in part] == [k for k in keys if stable_hash(k) % count == i]


def test_the_split_is_stable_and_about_even():
    # Pinned values: a replica restarted, upgraded or on another machine agrees with the others.
    assert [stable_hash(k) for k in (1, 42, 123456789)] == [2212294583, 841265288, 3421780262]
    sizes = [len(Shard(i, 4).select(Flow(k) for k in range(1, 5001))) for i in range(4)]
    assert sum(sizes) == 5000 and all(abs(size - 1250) < 125 for size in sizes), sizes


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError):
        Shard(3, 3)
    with pytest.raises(ValueError):
        Shard(0, 0)
    assert index_from_hostname("itnio-exporter-12") == 12
    assert index_from_hostname("itnio-exporter-2.itnio-exporter.monitoring.svc") == 2
    with pytest.raises(ValueError):
        index_from_hostname("itnio-exporter-7d9f8-x2b4q")


async def test_the_poller_polls_and_exports_only_its_shard_also_after_a_reload(sim, make_exporter):
    config = validate_config(exporter_config(sim))
    extra = static_flows(40, 1, first_key=100)
    seen = []
    for index in range(3):
        published = []

        async def publish(snapshot, published=published):  # this iteration's list, not the last one
            published.append(snapshot)

        poller = Poller(config, _FakeSource(), publish, shard=Shard(index, 3))
        await poller.run_cycle()
        assert {s.key_id for s in published[-1].flows} == {f.key_id for f in config.flows if Shard(index, 3).owns(f.key_id)}
        # apply (reload) applies the shard too
        bigger = config.model_copy(update={"flows": [*config.flows, *[type(config.flows[0])(key_id=f.key_id) for f in extra]]})
        await poller.apply(bigger)
        await asyncio.sleep(0.05)
        keys = {s.key_id for s in poller.snapshot.flows}
        assert keys == {f.key_id for f in bigger.flows if Shard(index, 3).owns(f.key_id)}
        seen.extend(keys)
    assert sorted(seen) == sorted(f.key_id for f in bigger.flows)

    exporter = await make_exporter(sim, run_poller=False, exporter_options={"shard": Shard(1, 3)})
    await exporter.account().poller.run_cycle()
    samples = await scrape(exporter.port)
    assert value(samples, "itnio_exporter_shard_index") == 1
    assert value(samples, "itnio_exporter_shards") == 3
    exported = {labels["key_id"] for labels, _ in samples["itnio_recall_flow_up"]}
    assert exported == {str(f.key_id) for f in exporter.config.flows if Shard(1, 3).owns(f.key_id)}


class _FakeSource:
    def __init__(self, statuses=None):
        self.calls = []
        self.statuses = statuses or {}

    async def query_detail(self, key_id, deadline=None, may_send=None):
        from exporter.itnio.model import FlowDetail

        self.calls.append(key_id)
        return FlowDetail(status=self.statuses.get(key_id, 1), recall_interval_minutes=1, recall_num=1,
                          recall_type=0, nodes=())
