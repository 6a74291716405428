"""Per-filter norms of a filter-normalised random direction, under the last-axis rule and by layer.

    python scripts/filter_norms.py [--model mobilenetv2 | module:function | file.keras] [--seed 0]

For every tensor whose filter rule differs from the last-axis rule, prints the rule by layer, the
number of filters each rule sees, and the largest relative deviation of a filter's norm in the
direction from the same filter's norm in the centre, when its filters are taken as Li et al.
define them (the layer's own axes). By layer it is zero up to rounding; under the last-axis rule a
depthwise kernel ``(kh, kw, C, 1)`` is one filter, so its C filters keep random relative norms.
The default model is Keras's MobileNetV2 (alpha 0.35, 32x32 inputs, random weights: nothing is
downloaded).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _model(name: str):
    import keras

    if name == "mobilenetv2":
        model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                               classes=10)
        model.compile(loss="sparse_categorical_crossentropy")
        return model
    from landscape_dist.model.sources import ModelSpec

    return ModelSpec.from_source(name).build()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from landscape_dist.core.directions import (default_filter_rules, filter_norms,
                                                normalize_direction)
    from landscape_dist.core.layout import WeightLayout
    from landscape_dist.model.filters import filter_rules

    model = _model(args.model)
    variables = model.trainable_variables
    layout = WeightLayout.from_variables(variables)
    centre = layout.flatten([v.numpy() for v in variables])
    raw = np.random.default_rng(args.seed).standard_normal(layout.size).astype(np.float32)
    by_layer = filter_rules(model, warn=False)
    last_axis = default_filter_rules(layout)
    directions = {label: layout.unflatten(normalize_direction(raw, centre, layout, "filter", "none",
                                                              rules))
                  for label, rules in (("last axis", last_axis), ("by layer", by_layer))}
    print(f"{args.model}: {len(variables)} tensors, {layout.size} weights")
    print(f"{'tensor':<44} {'filters':>7} {'last-axis filters':>17} {'max dev (last axis)':>20} "
          f"{'max dev (by layer)':>19}  rule by layer")
    worst = {"last axis": 0.0, "by layer": 0.0}
    for i, (name, rule, old) in enumerate(zip(layout.names, by_layer, last_axis)):
        if rule.axes == old.axes:
            continue
        w = filter_norms(layout.unflatten(centre)[i], rule.axes)
        devs = {}
        for label in directions:
            d = filter_norms(directions[label][i], rule.axes)
            devs[label] = float(np.max(np.abs(d / np.where(w > 0, w, 1.0) - 1.0)))
            worst[label] = max(worst[label], devs[label])
        old_count = int(np.prod([layout.shapes[i][a] for a in old.axes]))
        print(f"{name[-44:]:<44} {w.size:>7} {old_count:>17} "
              f"{devs['last axis']:>20.3g} {devs['by layer']:>19.2g}  {rule.rule}")
    print(f"largest deviation of a filter's norm from the centre's: last-axis rule "
          f"{worst['last axis']:.3g}, by layer {worst['by layer']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
