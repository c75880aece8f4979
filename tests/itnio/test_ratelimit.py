"""The request-rate token bucket (exporter/itnio/ratelimit.py), alone and in the client."""

import asyncio
import time

import pytest

from exporter.config import (
    Credentials,
)
from exporter.itnio.client import ItnioClient
from exporter.itnio.errors import NotSent
from exporter.itnio.ratelimit import TokenBucket
from exporter.metrics.telemetry import Telemetry
from exporter.simulator import DEMO_API_KEY, DEMO_API_SECRET
from tests.helpers import FakeClock


def test_token_bucket_with_a_fake_clock():
    clock = FakeClock(100.0)
    bucket = TokenBucket(10, burst=2, clock=clock)
    assert bucket.reserve() == 100.0 and bucket.reserve() == 100.0  # the burst
    # then one every 100 ms, booked in order
    assert [round(bucket.reserve() - 100.0, 6) for _ in range(3)] == [0.1, 0.2, 0.3]
    # a caller whose token would come after its deadline gets none and takes none
    assert bucket.reserve(deadline=100.35) is None
    assert round(bucket.reserve(deadline=100.4) - 100.0, 6) == 0.4
    clock.now = 110.0  # idle for long: refills to the burst, no more
    assert bucket.reserve() == 110.0 and bucket.reserve() == 110.0
    assert round(bucket.reserve() - 110.0, 6) == 0.1
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_the_client_never_sends_faster_than_the_bucket_nor_past_the_deadline(sim):
    client = ItnioClient(
        sim.base_url, Credentials(DEMO_API_KEY, DEMO_API_SECRET, "t"), timeout=0.4, max_connections=8,
        max_response_bytes=1 << 20, telemetry=Telemetry().account("default"), max_requests_per_second=20,
    )
    try:
        # burst 20, then one per 50 ms: 25 requests cannot all be sent within the first 100 ms of a
        # 200 ms deadline (the last 100 ms, a quarter of the timeout, are left to the attempts)
        deadline = time.monotonic() + 0.2
        outcomes = await asyncio.gather(
            *(client.query_detail(1 + i % 5, deadline) for i in range(25)), return_exceptions=True
        )
        sent = sum(1 for o in outcomes if not isinstance(o, BaseException))
        not_sent = [o for o in outcomes if isinstance(o, NotSent)]
        assert sent == sum(sim.requests_per_flow.values())
        assert 20 <= sent <= 22 and len(not_sent) == 25 - sent
        assert "max_requests_per_second" in not_sent[0].reason
    finally:
        await client.close()
