"""The metrics in plain words (issue 31, "mood in words"): each case a manager meets has its own sentence."""

from __future__ import annotations

import pytest

from aggregator.summary import Scene, Window, camera_state, describe_camera, describe_overall, span_words

W, TREND = 600.0, 0.1


def window(visitors: int = 9, unreadable: int = 0, uncertain: int = 0, **counts: int) -> Window:
    """Readings per emotion (``neutral=62``), plus ``uncertain`` points that carry no emotion."""
    return Window(dict(counts), sum(counts.values()) + uncertain, visitors, unreadable)


def test_the_issue_s_example_sentence():
    now = window(9, 2, uncertain=5, neutral=62, happy=38)  # satisfaction +0.38
    before = window(5, neutral=88, happy=12)  # +0.12
    scene = Scene("door", now, before, ever_seen=True, people_now=3)
    assert describe_camera(scene, W, TREND) == (
        "Door, last 10 minutes: mostly neutral, 62% of readings; satisfaction +0.38, up from +0.12 in the 10 minutes "
        "before; 3 people now; 2 of 9 visitors too far away or unclear to read.")


def test_the_trend_is_said_only_when_it_moved_by_the_threshold():
    now, before = window(4, happy=60, neutral=40), window(4, happy=55, neutral=45)  # +0.60 vs +0.55
    quiet = describe_camera(Scene("door", now, before, True, people_now=1), W, TREND)
    assert quiet == "Door, last 10 minutes: mostly happy, 60% of readings; satisfaction +0.60; 1 person now."
    loud = describe_camera(Scene("door", now, before, True, people_now=1), W, 0.05)  # the setting decides
    assert "up from +0.55 in the 10 minutes before" in loud
    worse = describe_camera(Scene("door", window(2, sad=7, neutral=3), window(2, happy=5, neutral=5), True), W, TREND)
    assert "satisfaction -0.70, down from +0.50 in the 10 minutes before" in worse
    nothing_before = describe_camera(Scene("door", now, Window(), True), W, TREND)
    assert "from" not in nothing_before and "satisfaction +0.60" in nothing_before


def test_a_mix_without_a_majority_is_mixed():
    text = describe_camera(Scene("hall", window(3, happy=40, neutral=35, sad=25), Window(), True), W, TREND)
    assert text.startswith("Hall, last 10 minutes: mixed, most often happy (40% of readings); satisfaction +0.15")


def test_no_faces_seen_yet():
    assert describe_camera(Scene("door", Window(), Window(), ever_seen=False), W, TREND) == "No faces seen yet on door."
    down = Scene("door", Window(), Window(), ever_seen=False, state="down")
    assert describe_camera(down, W, TREND) == "No faces seen yet on door (camera down, no new readings)."


def test_nobody_in_the_window_but_seen_before():
    text = describe_camera(Scene("door", Window(), window(2, happy=4), True), W, TREND)
    assert text == "Door, last 10 minutes: nobody seen; nobody now."


def test_a_camera_down_says_so_first():
    scene = Scene("door", window(2, happy=8, neutral=2), Window(), True, state="down")
    assert describe_camera(scene, W, TREND) == ("Door, last 10 minutes: camera down, no new readings; mostly happy, "
                                                "80% of readings; satisfaction +0.80; nobody now.")
    assert describe_camera(Scene("door", Window(), Window(), True, state="paused"), W, TREND).startswith(
        "Door, last 10 minutes: camera paused; nobody seen")


def test_every_reading_uncertain_gives_no_mood():
    scene = Scene("door", window(4, 4, uncertain=30), window(2, happy=5), True, people_now=2)
    assert describe_camera(scene, W, TREND) == (
        "Door, last 10 minutes: 4 visitors, all too far away or unclear to read their mood; 2 people now.")
    one = describe_camera(Scene("door", window(1, 1, uncertain=3), Window(), True), W, TREND)
    assert "1 visitor, all too far away" in one


def test_a_past_range_and_a_removed_camera_say_no_now():
    past = describe_camera(Scene("door", window(2, happy=3), Window(), True, live=False, people_now=2), W, TREND)
    assert past == "Door, the 10 minutes to the end of the range: mostly happy, 100% of readings; satisfaction +1.00."
    was_down = Scene("door", window(2, happy=3), Window(), True, state="down", live=False)
    assert "down" not in describe_camera(was_down, W, TREND)  # its state now, not then
    assert "down" not in describe_overall([was_down], W, TREND, live=False)
    removed = describe_camera(Scene("old", window(1, sad=2), Window(), True, state="removed"), W, TREND)
    assert "now" not in removed and removed.startswith("Old, last 10 minutes: mostly sad")


def test_overall_combines_cameras_and_names_those_down():
    scenes = [Scene("door", window(9, 2, uncertain=4, neutral=62, happy=38), window(5, neutral=88, happy=12), True,
                    people_now=3),
              Scene("till", window(1, sad=10), Window(), True, state="down"),
              Scene("gone", window(1, happy=10), Window(), True, state="removed", people_now=4)]
    text = describe_overall(scenes, W, TREND, live=True)
    assert text == ("All cameras, last 10 minutes: mostly neutral, 52% of readings; satisfaction +0.32, up from +0.12 "
                    "in the 10 minutes before; 3 people now; 2 of 11 visitors too far away or unclear to read; 1 of 2 "
                    "cameras down (till).")


def test_overall_without_data():
    assert describe_overall([], W, TREND, live=True) == "No camera yet."
    idle = [Scene("door", Window(), Window(), False), Scene("till", Window(), Window(), False, state="down")]
    assert describe_overall(idle, W, TREND, live=True) == "No faces seen yet on any camera; 1 of 2 cameras down (till)."
    assert describe_overall(idle[:1], W, TREND, live=True) == "No faces seen yet on any camera."


@pytest.mark.parametrize("seconds, words", [(600, "10 minutes"), (60, "minute"), (3600, "hour"), (5400, "90 minutes"),
                                            (7200, "2 hours"), (90, "90 seconds")])
def test_span_words(seconds, words):
    assert span_words(seconds) == words


@pytest.mark.parametrize("status, state", [(None, "removed"), ("failed", "down"), ("reconnecting", "down"),
                                           ("stopped", "down"), ("paused", "paused"), ("ended", "ended"),
                                           ("connecting", "down"), ("waiting", "down"), ("connected", "running"),
                                           ("starting", "running")])
def test_camera_state(status, state):
    assert camera_state(status) == state
