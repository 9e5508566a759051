"""Team-draft interleaving (Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?",
CIKM 2008), generalised to more than two teams as team-draft multileaving (Schuth et al., CIKM 2014).

Algorithm (two teams A and B, as in the paper)::

    I <- []; TeamA <- {}; TeamB <- {}
    while |I| < k and A and B both still have a document not in I:
        if |TeamA| < |TeamB| or (|TeamA| == |TeamB| and coin() == heads):
            d <- first document of A not in I; TeamA <- TeamA + {d}
        else:
            d <- first document of B not in I; TeamB <- TeamB + {d}
        I <- I + [d]

With several teams, each pick goes to a team among those with the fewest picks, chosen uniformly at random. The
loop stops as soon as any team has nothing left to contribute, so team sizes never differ by more than one. Each
shown document is credited to exactly one team; clicks on it count for that team.

Pure: the caller passes the random generator (seed it per impression to make the list reproducible).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["team_draft"]


def team_draft(
    rankings: Mapping[str, Sequence[str]], k: int, rng: random.Random,
    prior: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """Interleave ``rankings`` (team name -> ranked doc ids, best first) into at most ``k`` (doc_id, team) pairs.

    ``prior`` continues a list already shown (a next result page): its documents are never picked again and its
    team counts carry over, so the continued list stays balanced. Only the new pairs are returned.
    Raises ``ValueError`` for fewer than two teams or ``k < 1``. Duplicate ids within one ranking are ignored
    after their first occurrence.
    """
    if len(rankings) < 2:
        raise ValueError(f"team_draft needs at least two rankings, got {len(rankings)}: {list(rankings)}")
    if k < 1:
        raise ValueError(f"k is {k}; expected k >= 1")
    teams = list(rankings)
    cursor = {t: 0 for t in teams}
    picks = {t: 0 for t in teams}
    shown: set[str] = set()
    for doc, team in prior:
        shown.add(doc)
        if team in picks:
            picks[team] += 1
    out: list[tuple[str, str]] = []

    def next_doc(team: str) -> str | None:
        ranking = rankings[team]
        i = cursor[team]
        while i < len(ranking) and ranking[i] in shown:
            i += 1
        cursor[team] = i
        return ranking[i] if i < len(ranking) else None

    while len(out) < k:
        if any(next_doc(t) is None for t in teams):
            break
        fewest = min(picks.values())
        candidates = [t for t in teams if picks[t] == fewest]
        team = candidates[0] if len(candidates) == 1 else candidates[rng.randrange(len(candidates))]
        doc = next_doc(team)
        if doc is None:  # cannot happen: checked for every team above
            break
        shown.add(doc)
        picks[team] += 1
        out.append((doc, team))
    return out
