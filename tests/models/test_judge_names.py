"""The judge's "response 1/2" (places in a judged pair) named as the candidates they were."""

from __future__ import annotations

import pytest

from stagewise.models.reasoning.judge import name_candidates


@pytest.mark.parametrize(("reason", "expected"), [
    ("response 2 names the circle", "candidate 4 names the circle"),
    ("Response 1 is vague but response 2 is not", "Candidate 2 is vague but candidate 4 is not"),
    ("the first response counts wrong", "candidate 2 counts wrong"),
    ("The second response is sharper", "Candidate 4 is sharper"),
    ("responses 12 and correspondence 2 stay", "responses 12 and correspondence 2 stay"),
])
def test_places_in_the_pair_become_candidate_numbers(reason: str, expected: str) -> None:
    assert name_candidates(reason, 1, 3) == expected
