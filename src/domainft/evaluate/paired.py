"""Paired statistics: two models answered the same items, so compare them item by item.

For each task and metric, the per-item scores of both runs (lm-eval's samples files, joined on doc_id) give the
mean paired difference with a percentile bootstrap 95 % interval, wins / ties / losses, and an exact two-sided
sign test on the items that differ. Two unpaired standard errors would throw that pairing away and call most
real differences noise.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95
SEED = 20240808  # the same items give the same interval on every run


@dataclass(frozen=True)
class Paired:
    """`other` minus `reference` on the same items; with higher_is_better False a win is a lower score."""

    n: int
    mean_diff: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int
    sign_p: float

    def better(self, higher_is_better: bool = True) -> bool:
        """The whole interval on the better side of zero."""
        return self.low > 0 if higher_is_better else self.high < 0

    def worse(self, higher_is_better: bool = True) -> bool:
        return self.high < 0 if higher_is_better else self.low > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(diffs: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES, level: float = LEVEL,
                       seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `diffs`."""
    if not diffs:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(rng.choices(diffs, k=n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    return means[int(tail * (resamples - 1))], means[int(math.ceil((1 - tail) * (resamples - 1)))]


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: the probability, with a fair coin per differing item, of a split at least this
    uneven. Ties carry no sign and are left out."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(reference: list[float], other: list[float], *, higher_is_better: bool = True,
           tie_tolerance: float = 1e-9) -> Paired:
    """`other` against `reference`, item i against item i."""
    if len(reference) != len(other):
        raise ValueError("paired scores need the same items on both sides")
    diffs = [o - r for r, o in zip(reference, other)]
    sign = 1 if higher_is_better else -1
    wins = sum(sign * d > tie_tolerance for d in diffs)
    losses = sum(sign * d < -tie_tolerance for d in diffs)
    low, high = bootstrap_interval(diffs)
    mean = sum(diffs) / len(diffs) if diffs else math.nan
    return Paired(len(diffs), mean, low, high, wins, len(diffs) - wins - losses, losses, sign_test(wins, losses))


def item_scores(rows: list[dict[str, Any]], metric: str) -> dict[Any, float]:
    """doc_id -> the item's score on `metric`, from lm-eval's samples rows (rows without a number are skipped)."""
    out = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[row["doc_id"]] = float(value)
    return out


def paired_rows(reference_rows: list[dict[str, Any]], other_rows: list[dict[str, Any]], metric: str, *,
                higher_is_better: bool = True) -> Paired | None:
    """Paired statistics over the items both runs scored on `metric`; None when they share none."""
    return paired_items(item_scores(reference_rows, metric), item_scores(other_rows, metric),
                        higher_is_better=higher_is_better)


def paired_items(ref: dict[Any, float], oth: dict[Any, float], *, higher_is_better: bool = True) -> Paired | None:
    """Paired statistics over the item ids both score maps share; None when they share none."""
    shared = sorted(set(ref) & set(oth), key=str)
    if not shared:
        return None
    return paired([ref[i] for i in shared], [oth[i] for i in shared], higher_is_better=higher_is_better)
