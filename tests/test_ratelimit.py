"""engine.ratelimit: bucket math on a fake clock, venue corrections, 429 / 418 / -1003 / -1015."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ratelimit import (MIN_BAN_NS, ORDERS, RAW_REQUESTS, REQUEST_WEIGHT, SLOTS, Cost, RateLimitEntry,
                              RateLimiter, RateLimitError, WindowBucket, depth_weight, request_cost)

S = 1_000_000_000
MS = 1_000_000
MINUTE = 60 * S


class Clock:
    def __init__(self, t: int = 1_000 * S) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Wall:
    def __init__(self, ms: int = 1_700_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def weight_only(limit: int = 100, interval: str = "MINUTE", n: int = 1) -> list[dict]:
    return [{"rateLimitType": REQUEST_WEIGHT, "interval": interval, "intervalNum": n, "limit": limit}]


def limiter(limits=None, margin=0, clock=None, wall=None, **kw) -> RateLimiter:
    return RateLimiter(limits if limits is not None else weight_only(), safety_margin_pct=margin,
                       clock_ns=clock or Clock(), wall_ms=wall or Wall(), **kw)


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 1_700_000_000_000,
    "rateLimits": [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
        {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000},
        {"rateLimitType": "CONNECTIONS", "interval": "MINUTE", "intervalNum": 5, "limit": 300},
        {"rateLimitType": "SOMETHING_NEW", "interval": "MINUTE", "intervalNum": 1, "limit": 1},
    ],
    "symbols": [],
}


# -- loading -----------------------------------------------------------------------------------------
def test_from_exchange_info_with_margin():
    rl = RateLimiter.from_exchange_info(EXCHANGE_INFO, safety_margin_pct=10, clock_ns=Clock())
    caps = {b.name: (b.limit, b.capacity) for b in rl.buckets.values()}
    assert caps == {
        "REQUEST_WEIGHT 1 MINUTE": (6000, 5400),
        "ORDERS 10 SECOND": (50, 45),
        "ORDERS 1 DAY": (160000, 144000),
        "RAW_REQUESTS 5 MINUTE": (300000, 270000),
        "CONNECTIONS 5 MINUTE": (300, 270),
    }
    assert rl.bucket(ORDERS, "SECOND", 10).interval_ns == 10 * S
    assert rl.bucket(REQUEST_WEIGHT, "HOUR") is None


def test_from_exchange_info_json_and_defaults():
    import msgspec

    rl = RateLimiter.from_exchange_info(msgspec.json.encode(EXCHANGE_INFO))
    assert len(rl.buckets) == 5
    d = RateLimiter.spot_defaults()
    assert {b.name for b in d.buckets.values()} == {"REQUEST_WEIGHT 1 MINUTE", "ORDERS 10 SECOND", "ORDERS 1 DAY",
                                                    "RAW_REQUESTS 5 MINUTE"}


@pytest.mark.parametrize("doc, words", [
    ({}, "lacks a 'rateLimits' list"),
    (b"{", "not valid JSON"),
    ({"rateLimits": [{"rateLimitType": "ORDERS", "interval": "WEEK", "intervalNum": 1, "limit": 1}]},
     "unknown interval 'WEEK'"),
    ({"rateLimits": [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 0, "limit": 1}]},
     "intervalNum must be >= 1"),
    ({"rateLimits": [{"rateLimitType": "ORDERS", "interval": "SECOND", "limit": 1}]}, "malformed rateLimits entry"),
    ({"rateLimits": [{"rateLimitType": "RAW_REQUESTS", "interval": "SECOND", "intervalNum": 1, "limit": 1}]},
     "neither REQUEST_WEIGHT nor ORDERS"),
])
def test_malformed_rate_limits(doc, words):
    with pytest.raises(RateLimitError, match=words):
        RateLimiter.from_exchange_info(doc)


def test_margin_keeps_at_least_one_token():
    b = WindowBucket(ORDERS, "SECOND", 1, 1, safety_margin_pct=50)
    assert b.capacity == 1
    assert WindowBucket(ORDERS, "SECOND", 1, 0).capacity == 0


# -- bucket math on a fake clock --------------------------------------------------------------------------
def test_capacity_exactly_then_refused():
    clock = Clock(0)
    rl = limiter(weight_only(100), margin=10, clock=clock)
    assert rl.try_acquire(50) and rl.try_acquire(40)  # 90 == capacity
    assert not rl.try_acquire(1)
    assert rl.granted == 2 and rl.denied == 1


def test_tokens_come_back_one_interval_later_rounded_up_to_a_slot():
    clock = Clock(0)
    rl = limiter(weight_only(10), clock=clock)
    b = rl.bucket(REQUEST_WEIGHT, "MINUTE")
    assert b.slot_ns == MINUTE // SLOTS == S
    clock.t = S // 2  # inside slot 0
    assert rl.try_acquire(10)
    assert not rl.try_acquire(1)
    # Slot 0 is counted until slot 61 begins: 60.5 s after the spend, never before 60 s.
    assert rl.wait_time_ns(1) == 61 * S - S // 2
    clock.t = 61 * S - 1
    assert not rl.try_acquire(1)
    clock.t = 61 * S
    assert rl.wait_time_ns(10) == 0
    assert rl.try_acquire(10)


def test_refill_is_per_slot_oldest_first():
    clock = Clock(0)
    rl = limiter(weight_only(10), clock=clock)
    for t, w in ((0, 3), (5 * S, 3), (20 * S, 4)):
        clock.t = t
        assert rl.try_acquire(w)
    clock.t = 30 * S
    b = rl.bucket(REQUEST_WEIGHT, "MINUTE")
    assert b.in_use == 10
    assert rl.wait_time_ns(3) == 31 * S  # the 3 of t=0 come back at 61 s
    assert rl.wait_time_ns(4) == 36 * S  # needs the 3 of t=5 s too: 66 s
    assert rl.wait_time_ns(10) == 51 * S  # everything: 81 s
    clock.t = 61 * S
    assert b.in_use == 10 and rl.try_acquire(3) and not rl.try_acquire(1)
    clock.t = 200 * S  # far beyond: the whole ring is cleared
    assert rl.try_acquire(10)


def test_wait_time_then_acquire_succeeds():
    clock = Clock(12_345)
    rl = limiter(weight_only(5, "SECOND", 10), clock=clock)
    assert rl.try_acquire(5)
    w = rl.wait_time_ns(2)
    assert w > 10 * S - 10 * S // SLOTS  # never early
    clock.t += w - 1
    assert not rl.try_acquire(2)
    clock.t += 1
    assert rl.try_acquire(2)


def test_priority_may_use_the_margin_but_not_the_limit():
    clock = Clock(0)
    rl = limiter(weight_only(100), margin=20, clock=clock)
    assert rl.try_acquire(80) and not rl.try_acquire(1)
    assert rl.try_acquire(20, priority=True)
    assert not rl.try_acquire(1, priority=True)
    assert rl.wait_time_ns(1, priority=True) > 0


def test_orders_and_raw_requests_are_charged():
    clock = Clock(0)
    rl = RateLimiter.from_exchange_info(EXCHANGE_INFO, safety_margin_pct=10, clock_ns=clock)
    c = request_cost("order.place")
    for _ in range(45):
        assert rl.try_acquire(c.weight, c.orders)
    assert not rl.try_acquire(c.weight, c.orders)  # ORDERS 10 s capacity 45
    assert rl.try_acquire(*request_cost("order.cancel"), priority=True)  # cancels carry no order count
    assert rl.try_acquire(*request_cost("depth", {"limit": 1000}))
    assert rl.bucket(REQUEST_WEIGHT, "MINUTE").in_use == 45 + 1 + 50
    assert rl.bucket(ORDERS, "DAY").in_use == 45
    assert rl.bucket(RAW_REQUESTS, "MINUTE", 5).in_use == 47
    assert rl.bucket("CONNECTIONS", "MINUTE", 5).in_use == 0
    assert rl.try_acquire(2, connections=1)
    assert rl.bucket("CONNECTIONS", "MINUTE", 5).in_use == 1
    # Spent at the start of slot 0: counted until slot SLOTS + 1 begins (one interval + one slot).
    o10 = rl.bucket(ORDERS, "SECOND", 10)
    clock.t = (SLOTS + 1) * o10.slot_ns - 1
    assert not rl.try_acquire(c.weight, c.orders)
    clock.t = (SLOTS + 1) * o10.slot_ns
    assert rl.try_acquire(c.weight, c.orders)


def test_all_or_nothing():
    rl = RateLimiter.from_exchange_info(EXCHANGE_INFO, safety_margin_pct=0, clock_ns=Clock(0))
    for _ in range(50):
        assert rl.try_acquire(1, 1)
    weight_before = rl.bucket(REQUEST_WEIGHT, "MINUTE").in_use
    assert not rl.try_acquire(1, 1)  # ORDERS full: the weight is not taken either
    assert rl.bucket(REQUEST_WEIGHT, "MINUTE").in_use == weight_before


def test_a_request_that_can_never_fit_raises():
    rl = limiter(weight_only(100), margin=10)
    with pytest.raises(RateLimitError, match="can never fit the capacity 90"):
        rl.try_acquire(91)
    with pytest.raises(RateLimitError):
        rl.wait_time_ns(101, priority=True)
    assert rl.try_acquire(91, priority=True)


# -- corrections from the venue -----------------------------------------------------------------------------
def test_ws_rate_limits_count_wins_when_higher():
    clock = Clock(0)
    rl = limiter(weight_only(6000), margin=10, clock=clock)
    b = rl.bucket(REQUEST_WEIGHT, "MINUTE")
    assert rl.try_acquire(10)
    added = rl.observe_rate_limits([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                                     "limit": 6000, "count": 5390}])
    assert added == 5380 and b.in_use == 5390 and rl.corrections == 1
    assert rl.try_acquire(10) and not rl.try_acquire(1)
    # A lower count (e.g. the venue's fixed window rolled over) never lowers ours.
    assert rl.observe_rate_limits([RateLimitEntry("REQUEST_WEIGHT", "MINUTE", 1, 6000, 3)]) == 0
    assert b.in_use == 5400 and rl.corrections == 1


def test_ws_rate_limits_adopt_new_and_changed_limits():
    rl = limiter(weight_only(6000), margin=10)
    raw = (b'[{"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":50,"count":44},'
           b'{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":1200,"count":7}]')
    rl.observe_rate_limits(raw)
    o = rl.bucket(ORDERS, "SECOND", 10)
    assert o is not None and o.limit == 50 and o.in_use == 44
    w = rl.bucket(REQUEST_WEIGHT, "MINUTE")
    assert w.limit == 1200 and w.capacity == 1080 and w.in_use == 7
    assert rl.try_acquire(1, 1) and not rl.try_acquire(1, 1)  # 45 == capacity of 50 - 10 %


def test_rest_headers_correct_the_counts():
    clock = Clock(0)
    rl = RateLimiter.from_exchange_info(EXCHANGE_INFO, safety_margin_pct=0, clock_ns=clock)
    added = rl.observe_headers({"Content-Type": "application/json", "X-MBX-USED-WEIGHT-1M": "321",
                                "x-mbx-order-count-10s": "12", "X-MBX-ORDER-COUNT-1D": "900",
                                "X-MBX-USED-WEIGHT-1H": "5",  # no such limit loaded: ignored
                                "X-MBX-ORDER-COUNT-1M": "bogus"})
    assert added == 321 + 12 + 900
    assert rl.bucket(REQUEST_WEIGHT, "MINUTE").in_use == 321
    assert rl.bucket(ORDERS, "SECOND", 10).in_use == 12
    assert rl.bucket(ORDERS, "DAY").in_use == 900
    for _ in range(38):
        assert rl.try_acquire(1, 1)
    assert not rl.try_acquire(1, 1)  # 12 + 38 == 50


def test_simulator_rate_limit_shapes_are_understood():
    from engine.sim.limits import RateCounters, exchange_rate_limits

    rl = RateLimiter(exchange_rate_limits(), clock_ns=Clock(0))
    counters = RateCounters(lambda: 0)
    counters.add_weight(100)
    counters.add_order()
    assert rl.observe_rate_limits(counters.rate_limits(with_orders=True)) == 100 + 1 + 1


# -- 429 / 418 / -1003 / -1015 -------------------------------------------------------------------------
def test_rest_429_waits_out_retry_after_seconds():
    clock = Clock(0)
    rl = limiter(clock=clock)
    rl.on_rest_response(429, {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "100"}, -1003)
    assert rl.blocked and rl.rate_limited == 1
    assert not rl.try_acquire(1) and not rl.try_acquire(1, priority=True)
    assert rl.wait_time_ns(0, requests=0) == 7 * S
    clock.t = 7 * S - 1
    assert not rl.try_acquire(0, requests=0)
    clock.t = 7 * S
    assert rl.try_acquire(0, requests=0)


def test_ws_429_waits_until_retry_after_measured_on_server_time():
    clock, wall = Clock(0), Wall(1_000_000)
    rl = limiter(clock=clock, wall=wall)
    # Our wall clock is 500 s off; serverTime makes that irrelevant.
    rl.on_ws_response(429, None, -1003, {"serverTime": 1_500_000, "retryAfter": 1_503_000})
    assert rl.wait_time_ns(0, requests=0) == 3 * S
    # Without serverTime our wall clock is the reference.
    rl2 = limiter(clock=clock, wall=wall)
    rl2.on_ws_response(429, None, -1003, {"retryAfter": 1_004_500})
    assert rl2.wait_time_ns(0, requests=0) == 4500 * MS


def test_418_bans_everything_until_retry_after():
    clock = Clock(0)
    rl = limiter(clock=clock)
    rl.on_ws_response(418, None, -1003, {"serverTime": 10_000, "retryAfter": 10_000 + 600_000})
    assert rl.banned and rl.blocked and rl.bans == 1
    assert not rl.try_acquire(1, priority=True)  # not even cancels
    assert rl.wait_time_ns(1) == 600 * S
    clock.t = 600 * S
    assert not rl.banned and rl.try_acquire(1, priority=True)


def test_418_without_retry_after_waits_the_minimum_ban():
    clock = Clock(0)
    rl = limiter(clock=clock)
    rl.on_rest_response(418, {})
    assert rl.banned and rl.wait_time_ns(1) == MIN_BAN_NS


def test_minus_1015_blocks_new_orders_only_with_exponential_backoff():
    clock = Clock(0)
    rl = RateLimiter.from_exchange_info(EXCHANGE_INFO, backoff_initial_ms=1000, backoff_max_ms=5000, clock_ns=clock)
    waits = []
    for _ in range(5):
        rl.on_ws_response(429, None, -1015, None)  # the documented -1015 example has no retryAfter
        waits.append(rl.wait_time_ns(1, 1))
        assert rl.orders_blocked and not rl.blocked
        assert not rl.try_acquire(1, 1)
        assert rl.try_acquire(1, 0, priority=True)  # cancels still go out
    assert waits == [1 * S, 2 * S, 4 * S, 5 * S, 5 * S]  # doubled, capped
    clock.t += 5 * S
    assert rl.try_acquire(1, 1)
    # A normal answer resets the streak: the next hit waits the initial delay again.
    rl.on_ws_response(200, None)
    assert rl.backoff_streak == 0
    rl.on_ws_response(429, None, -1015)
    assert rl.wait_time_ns(1, 1) == 1 * S


def test_minus_1003_backs_off_everything_and_retry_after_is_a_floor():
    clock = Clock(0)
    rl = limiter(clock=clock, backoff_initial_ms=1000, backoff_max_ms=60_000)
    rl.on_error(400, -1003)  # a -1003 is a rate-limit hit whatever the status
    assert rl.blocked and rl.wait_time_ns(0, requests=0) == 1 * S
    rl.on_error(429, -1003, retry_after_ns=30 * S)
    assert rl.wait_time_ns(0, requests=0) == 30 * S  # Retry-After beats the 2 s back-off
    rl.on_error(429, -1003)
    assert rl.wait_time_ns(0, requests=0) == 30 * S  # a later, shorter block never shortens it
    assert rl.backoff_streak == 3


def test_other_errors_do_not_block():
    rl = limiter()
    rl.on_ws_response(400, None, -2010, None)
    rl.on_rest_response(503, {"Retry-After": "junk"}, -1008)
    assert not rl.blocked and not rl.orders_blocked and rl.try_acquire(1, 1)


# -- request costs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit, weight", [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50),
                                           (1001, 250), (5000, 250), (6000, 250)])
def test_depth_weight_boundaries(limit, weight):
    assert depth_weight(limit) == weight
    assert request_cost("depth", {"symbol": "BTCUSDT", "limit": limit}) == Cost(weight)


def test_request_costs():
    assert request_cost("depth") == Cost(5)  # default limit 100
    assert request_cost("order.place") == Cost(1, 1)
    assert request_cost("order.cancelReplace") == Cost(1, 1)
    assert request_cost("openOrders.status", {"symbol": "BTCUSDT"}) == Cost(6)
    assert request_cost("openOrders.status") == Cost(80)
    assert request_cost("exchangeInfo") == Cost(20)
    with pytest.raises(KeyError, match="no documented request weight"):
        request_cost("order.test")
    with pytest.raises(ValueError):
        depth_weight(0)


# -- properties -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("interval, num", [("SECOND", 1), ("SECOND", 10), ("MINUTE", 1), ("MINUTE", 5),
                                           ("HOUR", 1), ("DAY", 1)])
def test_never_early_never_more_than_a_slot_late_at_any_phase(interval, num):
    probe = WindowBucket(REQUEST_WEIGHT, interval, num, 1)
    slot, i_ns = probe.slot_ns, probe.interval_ns
    base = (7 * i_ns // slot) * slot  # a slot edge
    for phase in (0, 1, slot // 2, slot - 1):
        clock = Clock(base + phase)
        rl = RateLimiter(weight_only(10, interval, num), safety_margin_pct=0, clock_ns=clock)
        t = clock.t
        assert rl.try_acquire(10)
        clock.t = t + i_ns - 1
        assert not rl.try_acquire(1), (phase, "a token came back before one interval")
        clock.t = t + (SLOTS + 1) * slot  # slot = ceil(interval / SLOTS): interval + one slot + < SLOTS ns
        assert rl.try_acquire(10), (phase, "a token came back more than a slot late")


@st.composite
def scenarios(draw):
    name, num = draw(st.sampled_from([("SECOND", 1), ("SECOND", 10), ("MINUTE", 1)]))
    probe = WindowBucket(REQUEST_WEIGHT, name, num, 1)
    i_ns, slot = probe.interval_ns, probe.slot_ns
    start = draw(st.integers(0, 10**15))
    # Moves of the clock: random gaps, and boundary-seeking jumps (to a slot edge +- 1 ns, or to
    # an earlier grant's time + one interval +- 1 ns), where an off-by-one would show.
    move = st.one_of(st.tuples(st.just("dt"), st.integers(0, 3 * i_ns)),
                     st.tuples(st.just("dt"), st.integers(0, 2 * slot)),
                     st.tuples(st.just("edge"), st.sampled_from([-1, 0, 1])),
                     st.tuples(st.just("anniversary"), st.sampled_from([-1, 0, 1])))
    steps = draw(st.lists(st.tuples(move, st.integers(1, 12), st.booleans()), min_size=1, max_size=120))
    return name, num, slot, start, steps


@settings(max_examples=500, deadline=None)
@given(scenarios(), st.integers(1, 40), st.integers(0, 50))
def test_bucket_never_grants_more_than_the_limit_in_any_window(scenario, limit, margin):
    name, num, slot, start, steps = scenario
    clock = Clock(start)
    rl = RateLimiter([{"rateLimitType": REQUEST_WEIGHT, "interval": name, "intervalNum": num, "limit": limit}],
                     safety_margin_pct=margin, clock_ns=clock)
    b = rl.bucket(REQUEST_WEIGHT, name, num)
    interval_ns = b.interval_ns
    grants: list[tuple[int, int, bool]] = []
    for (kind, x), n, priority in steps:
        if kind == "dt":
            clock.t += x
        elif kind == "edge":
            clock.t = max(clock.t, (clock.t // slot + 1) * slot + x)
        else:
            live = [u for (u, _, _) in grants if u > clock.t - interval_ns]
            if live:
                clock.t = max(clock.t, live[0] + interval_ns + x)
        cap = b.limit if priority else b.capacity
        if n > cap:
            with pytest.raises(RateLimitError):
                rl.try_acquire(n, priority=priority)
            continue
        if rl.try_acquire(n, priority=priority):
            grants.append((clock.t, n, priority))
    for i, (t, _, prio) in enumerate(grants):
        # Every window of one interval ending at a grant (so every window) holds at most the limit,
        # and at most the capacity when that grant was a normal one.
        in_window = sum(n for (u, n, _) in grants[: i + 1] if u > t - interval_ns)
        assert in_window <= b.limit
        if not prio:
            assert in_window <= b.capacity


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.integers(0, 10**15),
       st.lists(st.tuples(st.integers(0, 3 * S), st.integers(1, 12)), min_size=1, max_size=150))
def test_wait_time_is_exact(limit, start, steps):
    clock = Clock(start)
    rl = RateLimiter(weight_only(limit, "SECOND", 10), safety_margin_pct=0, clock_ns=clock)
    for dt, n in steps:
        clock.t += dt
        n = min(n, limit)
        w = rl.wait_time_ns(n)
        if w == 0:
            assert rl.try_acquire(n)
            continue
        assert not rl.try_acquire(n)
        clock.t += w - 1
        assert not rl.try_acquire(n)  # one ns early is refused
        clock.t += 1
        assert rl.try_acquire(n)  # exactly on time is granted
