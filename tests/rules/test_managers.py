"""Lists of managers and the leader hint: what the CLI, the client library and the agent share."""

from __future__ import annotations

import pytest

from podium.rules import managers


def test_a_list_of_managers_parses_in_order_without_repeats() -> None:
    assert managers.parse("a:1, b:2,a:1,[::1]:3") == ["a:1", "b:2", "[::1]:3"]


@pytest.mark.parametrize("text", ["", "a", "a:", ":1", "a:0", "a:70000", "a:1,,b:2", "a:x"])
def test_a_bad_address_is_named_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT") as err:
        managers.parse(text, what="--join")
    assert "--join" in str(err.value)


def test_the_hint_is_read_from_trailing_metadata() -> None:
    assert managers.leader_hint((("other", "x"), (managers.LEADER_KEY, "b:2"))) == "b:2"
    assert managers.leader_hint(((managers.LEADER_KEY, b"b:2"),)) == "b:2"
    assert managers.leader_hint(((managers.LEADER_KEY, ""),)) is None
    assert managers.leader_hint(None) is None
    join = ((managers.LEADER_JOIN_KEY, "b:3"),)
    assert managers.leader_hint(join, key=managers.LEADER_JOIN_KEY) == "b:3"
    assert managers.leader_hint(join) is None


def test_the_hint_comes_first_then_the_next_in_the_list() -> None:
    known = ["a:1", "b:2", "c:3"]
    assert managers.next_address(known, "a:1", "c:3") == "c:3"
    assert managers.next_address(known, "a:1", None) == "b:2"
    assert managers.next_address(known, "c:3", None) == "a:1"
    assert managers.next_address(known, "c:3", "c:3") == "a:1"  # a hint at itself: move on
    assert managers.next_address(known, "a:1", "d:4") == "d:4"
    assert known[-1] == "d:4"  # a leader not in the list is remembered


def test_waits_are_short_within_a_round_and_bounded_after_each() -> None:
    within = [managers.delay_after(n, 3) for n in (1, 2, 4, 5)]
    assert all(0 <= d <= 0.05 for d in within)
    rounds = [managers.delay_after(3 * r, 3) for r in range(1, 12)]
    assert rounds[0] <= 1.5 * managers.ROUND_DELAY_BASE_S
    assert all(d <= 1.5 * managers.ROUND_DELAY_MAX_S for d in rounds)
    assert rounds[-1] >= 0.5 * managers.ROUND_DELAY_MAX_S
