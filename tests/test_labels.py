from __future__ import annotations

from pulse_proxy.stats.labels import BoundedLabel, clean_label


def test_first_values_are_kept_and_later_ones_fold() -> None:
    """The first max_values distinct values stay as they are; later new ones become 'other'."""
    label = BoundedLabel(2)
    assert [label.fold(v) for v in ("a", "b", "c", "a", "b", "d")] == [
        "a",
        "b",
        "other",
        "a",
        "b",
        "other",
    ]
    assert label.values == {"a", "b"}
    assert label.folded == 2


def test_none_and_empty_become_none() -> None:
    """A missing value has its own label value and does not use up a slot."""
    label = BoundedLabel(1)
    assert label.fold(None) == "none"
    assert label.fold("") == "none"
    assert label.fold("x") == "x"
    assert BoundedLabel(1, "rest", none="unknown").fold(None) == "unknown"


def test_values_are_truncated_and_escaped() -> None:
    """Control characters are escaped and values cut to max_length, so no line can be forged."""
    label = BoundedLabel(10, max_length=8)
    assert label.fold("a\nb") == "a\\nb"
    assert label.fold("x" * 100) == "x" * 8
    assert clean_label("\x00" * 50, 10) == "\\u0000\\u00"


def test_values_sharing_a_cleaned_form_share_a_slot() -> None:
    """Raw values that clean to the same string count once towards the limit."""
    label = BoundedLabel(1, max_length=4)
    assert label.fold("abcd-1") == "abcd"
    assert label.fold("abcd-2") == "abcd"
    assert label.fold("zzzz") == "other"
    assert len(label) == 1


def test_memory_stays_bounded_under_a_flood() -> None:
    """A flood of 100,000 names leaves at most max_values kept values and a bounded cache."""
    label = BoundedLabel(100)
    for i in range(100_000):
        label.fold(f"junk-{i}")
    assert len(label) == 100
    assert len(label._seen) <= 4 * 100 + 16
    assert label.folded == 100_000 - 100


def test_zero_max_values_folds_everything() -> None:
    """With no slots every value folds (a way to drop a label's detail entirely)."""
    label = BoundedLabel(0)
    assert label.fold("gpt-4o") == "other"
