"""The capability list and the rooms and hooks the CLI and the report find through it."""

from dllab.capabilities import CAPABILITIES, hooks, rooms


def test_hooks_are_the_rooms_that_define_the_name_in_capability_order():
    found = hooks("report", "submitted_figures")
    assert [c for c, _ in found] == ["vision", "p2g", "asr"]  # attention and hopfield quote no figures
    assert all(fn.__name__ == "submitted_figures" for _, fn in found)
    assert [c for c, _ in hooks("report", "experiments")] == [c for c, _ in rooms("report")] == list(CAPABILITIES)
    assert [c for c, _ in hooks("report", "experiments", only=["asr", "vision"])] == ["vision", "asr"]
    assert hooks("report", "no_such_hook") == [] and hooks("no_such_room", "experiments") == []
