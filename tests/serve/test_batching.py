"""Dynamic batching: concurrent inputs share forward passes, grouped by length, with back-pressure."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fmloop.serve.batching import Batcher, QueueFull


def _batcher(**kwargs):
    seen = []

    def run(values):
        seen.append(list(values))
        time.sleep(0.01)
        return [v * 2 for v in values]

    batcher = Batcher(run, **kwargs)
    batcher.start()
    return batcher, seen


def test_concurrent_inputs_share_forward_passes():
    batcher, seen = _batcher(max_batch_size=8, max_wait_ms=50)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda v: batcher.submit([v])[0].result(5), range(32)))
    batcher.stop()
    assert results == [v * 2 for v in range(32)]
    assert len(seen) < 32 and max(len(b) for b in seen) <= 8 and sum(len(b) for b in seen) == 32


def test_a_batch_takes_the_oldest_input_and_the_nearest_lengths():
    gate = threading.Event()
    batches = []

    def run(values):
        gate.wait(5)
        batches.append(values)
        return values

    batcher = Batcher(run, max_batch_size=3, max_wait_ms=0)
    batcher.start()
    first = batcher.submit(["blocker"], [7])  # occupies the worker while the rest queue up
    time.sleep(0.05)
    lengths = [50, 3, 48, 4, 49, 5]
    futures = batcher.submit([f"n{n}" for n in lengths], lengths)
    gate.set()
    for f in first + futures:
        f.result(5)
    batcher.stop()
    assert batches[1] == ["n50", "n48", "n49"] and batches[2] == ["n3", "n4", "n5"]


def test_a_full_queue_refuses_at_once_and_errors_reach_every_caller():
    gate = threading.Event()

    def run(values):
        gate.wait(5)
        raise RuntimeError("model failed")

    batcher = Batcher(run, max_batch_size=2, max_wait_ms=0, max_queue=4)
    batcher.start()
    futures = batcher.submit([1, 2])
    time.sleep(0.05)  # the worker holds those two; four more fill the queue
    futures += batcher.submit([3, 4, 5, 6])
    with pytest.raises(QueueFull):
        batcher.submit([7])
    gate.set()
    for f in futures:
        with pytest.raises(RuntimeError, match="model failed"):
            f.result(5)
    batcher.stop()


def test_stop_finishes_what_is_queued():
    batcher, seen = _batcher(max_batch_size=4, max_wait_ms=1000)
    futures = batcher.submit([1, 2, 3])
    batcher.stop()
    assert [f.result(1) for f in futures] == [2, 4, 6]
    with pytest.raises(QueueFull):
        batcher.submit([4])


def test_a_lone_request_does_not_wait_for_company():
    batcher, seen = _batcher(max_batch_size=8, max_wait_ms=60_000)
    assert batcher.submit([1])[0].result(30) == 2  # would take 60 s if it waited for company
    batcher.stop()


def test_a_forming_batch_waits_for_an_announced_request():
    batcher, seen = _batcher(max_batch_size=8, max_wait_ms=60_000)
    batcher.announce()
    batcher.announce()
    first = batcher.submit([1], announced=True)
    time.sleep(0.1)  # the batch holds: one more request is on its way
    second = batcher.submit([2], announced=True)
    assert [f.result(30) for f in first + second] == [2, 4]
    batcher.stop()
    assert seen == [[1, 2]]
