"""The flat-vector view of a model's weights: tensor names, shapes and offsets."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WeightLayout:
    """Names and shapes of the tensors that make up a flat weight vector, in order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def from_variables(cls, variables) -> "WeightLayout":
        """Layout of a list of Keras variables (their ``path`` names and shapes)."""
        return cls(tuple(getattr(v, "path", v.name) for v in variables),
                   tuple(tuple(int(d) for d in v.shape) for v in variables))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s, dtype=np.int64)) for s in self.shapes)

    @property
    def offsets(self) -> np.ndarray:
        """Start of each tensor in the flat vector, plus the total size at the end; shape (T+1,)."""
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    @property
    def size(self) -> int:
        return int(sum(self.sizes))

    def flatten(self, tensors) -> np.ndarray:
        """Concatenate tensors in layout order into one float32 vector of shape (size,)."""
        arrays = [np.asarray(t, dtype=np.float32) for t in tensors]
        got = tuple(a.shape for a in arrays)
        if got != self.shapes:
            raise ValueError(f"The weights do not fit the layout: expected shapes {self.shapes}, "
                             f"got {got}.")
        return np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0, np.float32)

    def unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split a vector of shape (size,) back into tensors of the layout's shapes (views)."""
        flat = np.asarray(flat)
        if flat.shape != (self.size,):
            raise ValueError(f"The flat vector has shape {flat.shape}; the layout needs ({self.size},).")
        off = self.offsets
        return [flat[off[i]:off[i + 1]].reshape(s) for i, s in enumerate(self.shapes)]

    def mismatch(self, other: "WeightLayout", ours: str = "the model",
                 theirs: str = "the other") -> str | None:
        """None when ``other`` has this layout's structure (the same shapes in the same order,
        whatever the tensors' names: ``h1/kernel`` loaded from a file is ``eos_mlp/h1/kernel``
        built in memory); else what differs, in words: the first tensor whose shape differs
        and both counts of tensors and weights."""
        if other.shapes == self.shapes:
            return None
        counts = (f"{len(self.shapes)} tensors, {self.size} weights in {ours}; "
                  f"{len(other.shapes)} tensors, {other.size} weights in {theirs}")
        for i, (a, b) in enumerate(zip(self.shapes, other.shapes)):
            if a != b:
                return (f"tensor {i} ('{self.names[i]}') has shape {a} in {ours} and {b} in "
                        f"{theirs}; {counts}")
        i = min(len(self.shapes), len(other.shapes))
        extra, where = (self, ours) if len(self.shapes) > i else (other, theirs)
        return f"tensor {i} ('{extra.names[i]}') is only in {where}; {counts}"

    def low_rank_mask(self) -> np.ndarray:
        """Boolean vector, True on entries of tensors with at most one dimension (biases, norms)."""
        mask = np.zeros(self.size, dtype=bool)
        off = self.offsets
        for i, shape in enumerate(self.shapes):
            if len(shape) <= 1:
                mask[off[i]:off[i + 1]] = True
        return mask

    def to_attrs(self) -> dict:
        """The layout as file attributes: ``layout_names`` and ``layout_shapes``, JSON lists.

        The one encoding every file of the package uses (surface and trajectory files).
        """
        return {"layout_names": json.dumps(list(self.names)),
                "layout_shapes": json.dumps([list(s) for s in self.shapes])}

    @classmethod
    def from_attrs(cls, attrs) -> "WeightLayout":
        """Read :meth:`to_attrs` back from a file's attributes (a mapping); also reads trajectory
        files of the first format, which stored names as a list and shapes as strings '[3, 4]'."""
        names, shapes = attrs["layout_names"], attrs["layout_shapes"]
        names = json.loads(_text(names)) if isinstance(names, (str, bytes)) else [_text(n) for n in names]
        if isinstance(shapes, (str, bytes)):
            shapes = json.loads(_text(shapes))
        else:
            shapes = [json.loads(_text(s)) for s in shapes]
        return cls(tuple(str(n) for n in names), tuple(tuple(int(d) for d in s) for s in shapes))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
