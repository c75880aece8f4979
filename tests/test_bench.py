"""The benchmark harness (benchmarks/bench.py): its pieces, not its speed."""

from pathlib import Path


def test_benchmark_calls_per_hour_follow_the_terminal_interval():
    import benchmarks.bench as bench

    result = bench.worker_calls_per_hour(500)
    # 350 completed or cancelled flows polled 4 times an hour (15m), 150 others 60 times
    assert result == {"flows": 500, "calls": 350 * 4 + 150 * 60, "naive": 500 * 60, "mix": result["mix"]}


def test_benchmark_reads_wrk_output():
    import benchmarks.bench as bench

    text = """Running 5s test @ http://127.0.0.1:1/metrics
  1 threads and 4 connections
  Latency Distribution
     50%  805.00us
     75%    1.02ms
     90%    1.30ms
     99%    2.41ms
  23423 requests in 5.00s, 8.95GB read
Requests/sec:   4684.22
"""
    assert bench.parse_wrk(text) == {"tool": "wrk", "rps": 4684.22, "requests": 23423, "p50_ms": 0.805,
                                     "p99_ms": 2.41, "errors": 0}
    errors = text.replace(
        "Requests/sec", "  Socket errors: connect 0, read 0, write 0, timeout 3\n  Non-2xx or 3xx responses: 2\nRequests/sec"
    )
    assert bench.parse_wrk(errors)["errors"] == 5


# docs/scaling.md promises an operator this bound on what one more account costs beyond its flows.
ACCOUNT_SERIES_BOUND = 250
SCALING_DOC = (Path(__file__).resolve().parent.parent / "docs" / "scaling.md").read_text()


async def test_an_account_adds_the_series_docs_scaling_says():
    """The series one account adds to a real exporter's /metrics, whatever its flows, are those
    docs/scaling.md lists for each set of features (so the page cannot go stale), and within its bound."""
    import re

    import benchmarks.bench as bench

    doc = SCALING_DOC
    assert f"at most {ACCOUNT_SERIES_BOUND} series" in doc
    for label, features in bench.OVERHEAD_FEATURES.items():
        measured = await bench.account_overhead(features)
        row = re.search(rf"^\| {re.escape(label)} \| (\d+) \| (\d+) \| (\d+) \|$", doc, re.M)
        assert row is not None, f"docs/scaling.md has no row for {label!r}"
        documented = tuple(int(number) for number in row.groups())
        assert (measured["fixed"], measured["per_flow"], measured["process"]) == documented, label
        assert measured["fixed"] <= ACCOUNT_SERIES_BOUND, measured["fixed_by_family"]
