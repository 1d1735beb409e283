"""A dispatcher's recorder waits a moment for company (`LINGER_S`) only while the provider answers
fast: behind a slow provider a slot turns over seldom, and its next send waits for the record."""

from __future__ import annotations

from services.dispatcher.recorder import LINGER_S, SLOW_SEND_S, Recorder


def _recorder() -> Recorder:
    return Recorder(None, "sms")  # type: ignore[arg-type]  # (pacing reads no database)


def test_fast_sends_wait_for_company_and_slow_ones_do_not():
    recorder = _recorder()
    assert recorder.lingering
    for _ in range(200):
        recorder.pace(0.005)
    assert recorder.lingering
    for _ in range(200):  # a provider taking 200 ms
        recorder.pace(0.2)
    assert not recorder.lingering
    for _ in range(200):
        recorder.pace(0.005)
    assert recorder.lingering


def test_a_stall_among_fast_sends_stops_the_wait_only_for_a_moment_and_the_line_does_not_flap():
    recorder = _recorder()
    for _ in range(100):
        recorder.pace(0.02)
    for _ in range(3):  # a stall: three sends of a second
        recorder.pace(1.0)
    for _ in range(100):
        recorder.pace(0.02)
    assert recorder.lingering
    # a mean just under the line after being over it: still not lingering until under 80% of it
    for _ in range(300):
        recorder.pace(SLOW_SEND_S * 1.2)
    assert not recorder.lingering
    for _ in range(300):
        recorder.pace(SLOW_SEND_S * 0.9)
    assert not recorder.lingering
    for _ in range(300):
        recorder.pace(SLOW_SEND_S * 0.7)
    assert recorder.lingering


def test_a_recorder_told_not_to_linger_never_does():
    recorder = Recorder(None, "sms", linger_s=0.0)  # type: ignore[arg-type]
    recorder.pace(0.001)
    assert not recorder.lingering
    assert LINGER_S > 0
