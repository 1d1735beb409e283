"""The circuit breaker's rule: which rate trips it, and when it does not look yet."""

from __future__ import annotations

from shared.domain.breaker import Thresholds, Window, thresholds, trip

DEFAULTS = Thresholds(failure_rate=0.5, opt_out_rate=0.05, bounce_rate=0.1, min_sends=50)


def test_nothing_trips_before_min_sends_have_finished():
    limits = thresholds({"min_sends": 10}, DEFAULTS)
    assert trip(limits, Window(finished=9, failed=9, accepted=0, undelivered=0, opt_outs=0)) is None
    assert trip(limits, Window(finished=10, failed=9, accepted=1, undelivered=0, opt_outs=0)) == {
        "code": "failure_rate", "value": 0.9, "threshold": 0.5, "window": 10,
    }


def test_each_rate_trips_over_its_own_threshold_and_not_at_it():
    limits = thresholds({"min_sends": 10}, DEFAULTS)
    at_limits = Window(finished=20, failed=10, accepted=10, undelivered=1, opt_outs=0)
    assert trip(limits, at_limits) is None  # 0.5 failed and 0.1 bounced are not above
    bounced = Window(finished=20, failed=0, accepted=20, undelivered=3, opt_outs=0)
    assert trip(limits, bounced) == {"code": "bounce_rate", "value": 0.15, "threshold": 0.1, "window": 20}
    opted_out = Window(finished=20, failed=0, accepted=20, undelivered=0, opt_outs=2)
    assert trip(limits, opted_out) == {"code": "opt_out_rate", "value": 0.1, "threshold": 0.05, "window": 20}


def test_stored_thresholds_fill_from_the_defaults_and_off_is_off():
    assert thresholds(None, DEFAULTS) == DEFAULTS
    partial = thresholds({"failure_rate": 0.2}, DEFAULTS)
    assert (partial.failure_rate, partial.bounce_rate, partial.min_sends) == (0.2, 0.1, 50)
    off = thresholds({"enabled": False}, DEFAULTS)
    assert trip(off, Window(finished=100, failed=100, accepted=0, undelivered=0, opt_outs=0)) is None
