"""The feedback rate limit: bursts up to the limit, then one request per 60/limit seconds, per key."""

from fmloop.serve.ratelimit import RateLimiter


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_burst_then_the_refill_rate_per_key():
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # one token every 10 s
    assert [limiter.wait_s("ann") for _ in range(6)] == [0.0] * 6
    assert limiter.wait_s("ann") == 10.0 and limiter.wait_s("bob") == 0.0
    clock.now = 10.0
    assert limiter.wait_s("ann") == 0.0 and limiter.wait_s("ann") > 0
    assert RateLimiter(0, clock=clock).wait_s("ann") == 0.0  # 0: no limit


def test_forgotten_keys_are_those_whose_bucket_refilled():
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    limiter.MAX_KEYS = 2
    limiter.wait_s("a")
    clock.now = 120.0
    limiter.wait_s("b")
    limiter.wait_s("c")  # over the cap: "a" (refilled long ago) is dropped, the recent ones stay
    assert set(limiter.buckets) == {"b", "c"}
