"""Data shards: which rows a shard holds, and how per-shard results combine exactly."""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("mean", "first")


def shard_bounds(n: int, num_shards: int, shard: int) -> tuple[int, int]:
    """[start, stop) of shard ``shard`` of ``num_shards`` over ``n`` examples (sizes differ by <= 1)."""
    return shard * n // num_shards, (shard + 1) * n // num_shards


def combine_parts(parts: list[dict], sizes: list[int], reductions: dict) -> dict[str, np.ndarray]:
    """Combine the shards' values of each part by its reduction.

    parts: one dict per shard, name -> (P,) array; sizes: examples per shard; reductions: name ->
    ``mean`` (a mean over examples: the size-weighted mean of the shards' means is the mean over
    all examples) or ``first`` (depends on the weights only, the same on every shard: taken once).
    """
    if len(parts) != len(sizes):
        raise ValueError(f"Got {len(parts)} shard results for {len(sizes)} shard sizes.")
    total = float(sum(sizes))
    weights = [n / total for n in sizes]
    out = {}
    for name, how in reductions.items():
        if how == "mean":
            out[name] = sum(w * p[name] for w, p in zip(weights, parts))
        elif how == "first":
            out[name] = parts[0][name]
        else:
            raise ValueError(f"The reduction of {name!r} must be one of {REDUCTIONS}. Got {how!r} instead.")
    return out
