"""Loss and metrics of a compiled Keras model at many points of a plane, per compiled call.

The weights at a point, ``centre + a*d0 + b*d1``, are formed inside a ``tf.function`` and fed to
``model.stateless_call``, vectorised over points with ``tf.vectorized_map`` (or, where a model's ops
do not vectorise, a compiled ``tf.map_fn`` loop). Non-trainable state (batch-norm statistics) stays
at the centre and layers run in inference mode. The data stays on the device as constant batches.
"""

from __future__ import annotations

import contextlib
import inspect
import logging

import numpy as np
import tensorflow as tf
import keras

from .layout import WeightLayout

log = logging.getLogger(__name__)

_MAX_POINTS_PER_CALL = 1024


@contextlib.contextmanager
def _quiet_tensorflow():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _loss_callable(model):
    loss = model.loss
    if loss is None:
        raise ValueError("The model must be compiled with a loss (model.compile(loss=...)).")
    if isinstance(loss, (list, tuple, dict)):
        raise ValueError("The model must have a single loss; models with several outputs or "
                         "losses are not supported yet.")
    fn = keras.losses.get(loss)
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: tf.reduce_mean(fn(y_true, y_pred))


def _compile_metrics(model):
    """The model's compiled-metrics container (built), or None when it has no metrics."""
    for metric in model.metrics:
        if metric.name == "compile_metrics" and metric.variables:
            return metric
    return None


def _activations_per_example(model) -> int:
    """Rough count of activation values one example creates in a forward pass."""
    total = 0
    try:
        for layer in model.layers:
            total += int(np.prod([d for d in layer.output.shape[1:] if d is not None]))
    except (AttributeError, ValueError, TypeError):
        total = 0
    return max(total, 16)


def _loss_name(model) -> str:
    loss = model.loss
    name = loss if isinstance(loss, str) else getattr(loss, "name", None) or getattr(
        loss, "__name__", type(loss).__name__)
    return str(name)


def check_data(model, x: np.ndarray, y: np.ndarray) -> None:
    """Refuse data that does not fit the model's input, or labels that do not fit its loss,
    with a one-line message naming the shapes (raises ValueError)."""
    expected = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if expected is not None:
        got = tuple(x.shape[1:])
        if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected, got)):
            raise ValueError(f"The 'data.source' setting gives inputs of shape {tuple(x.shape)}, "
                             f"but the model takes {(None,) + expected}. Give data "
                             f"whose examples have shape {expected}, or another model.")
    y_pred = np.asarray(model(x[:2], training=False))
    name = _loss_name(model)
    if "sparse" in name:
        if not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"The 'data.source' setting gives labels of type {y.dtype} for the loss "
                             f"{name!r}, which needs integer class indices. Give integer labels.")
        classes = y_pred.shape[-1]
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= classes:
            raise ValueError(f"The 'data.source' setting gives labels from {lo} to {hi}, but the "
                             f"model has {classes} outputs for the loss {name!r}. Give labels in "
                             f"0..{classes - 1}, or a model with more outputs.")
        return
    want = tuple(y_pred.shape[1:])
    got = tuple(y.shape[1:])
    if got != want and not (got == () and want == (1,)):
        raise ValueError(f"The 'data.source' setting gives labels of shape {tuple(y.shape)}, but "
                         f"the model's output is {(None,) + want} for the loss {name!r}. Give one "
                         f"label of shape {want} per example, or another model.")


_LINEAR_FIRST_LAYERS = ("Dense", "Conv1D", "Conv2D", "Conv3D")


class FirstLayerShortcut:
    """Pre-activations of a Sequential model's first layer, computed once per plane.

    A Dense or convolution layer's pre-activation is linear in its kernel and bias, and its input
    (the data) is the same at every grid point, so at ``centre + sum_k c_k d_k`` it equals
    ``Z_centre + sum_k c_k Z_k``, where each ``Z`` is the layer applied (without activation) to
    the data with the centre's or a direction's part of the kernel and bias. A point then costs
    one weighted sum instead of the first layer's matmul or convolution; the rest of the model
    runs layer by layer with ``stateless_call``. Used only where it applies exactly, where it
    saves work (kernel fan-in > 1 + k) and where the ``1 + k`` pre-activation arrays fit in
    ``budget`` bytes (see :meth:`applies`).
    """

    @staticmethod
    def applies(model, n_examples: int, k: int, budget: float) -> bool:
        if not isinstance(model, keras.Sequential) or len(model.layers) < 2:
            return False
        first = model.layers[0]
        if type(first).__name__ not in _LINEAR_FIRST_LAYERS or first.non_trainable_variables:
            return False
        if any(getattr(first, name, None) is not None for name in (
                "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "quantization_mode", "lora_rank")):
            return False
        if getattr(first, "compute_dtype", "float32") != "float32":
            return False
        # a point costs 1 + k multiply-adds per pre-activation instead of the kernel's fan-in
        fan_in = int(np.prod(first.kernel.shape[:-1]))
        size = int(np.prod([d for d in first.output.shape[1:]]))
        return fan_in > 1 + k and (1 + k) * n_examples * size * 4 <= budget

    def __init__(self, model, layout: WeightLayout, batches, k: int):
        self.k = k
        first = model.layers[0]
        config = dict(first.get_config(), activation="linear", name=f"{first.name}_linear")
        self.linear = type(first).from_config(config)
        self.linear.build(tuple(model.inputs[0].shape))
        self.activation = first.activation
        self.rest = model.layers[1:]
        position = {v.path: i for i, v in enumerate(model.trainable_variables)}

        def slices(layer):  # (offset, size, shape) in the flat vector of each of its variables
            return [(int(layout.offsets[position[v.path]]), int(layout.sizes[position[v.path]]),
                     tuple(v.shape)) for v in layer.trainable_variables]

        self.first_slices = slices(first)
        self.rest_slices = [slices(layer) for layer in self.rest]
        nt_position = {v.path: i for i, v in enumerate(model.non_trainable_variables)}
        self.rest_nt = [[nt_position[v.path] for v in layer.non_trainable_variables]
                        for layer in self.rest]
        # inference mode for the layers whose call takes it (dropout off, batch-norm statistics)
        self.kwargs = [{"training": False} if "training" in inspect.signature(layer.call).parameters
                       else {} for layer in self.rest]
        self.batches = batches
        # per data batch: pre-activations at the centre (1, ...) and for each direction (k, ...)
        self.z = [tf.Variable(tf.zeros((1 + k,) + tuple(self.linear.compute_output_shape(
            tuple(xb.shape)))), trainable=False) for xb, _ in batches]

    def _weights(self, flat, slices):
        return [tf.reshape(flat[o:o + n], shape) for o, n, shape in slices]

    def set_plane(self, centre, directions) -> None:
        """Compute the pre-activations for this plane's centre and directions (once per plane)."""
        vectors = [centre] + list(directions)
        for z, (xb, _) in zip(self.z, self.batches):
            parts = [self.linear.stateless_call(self._weights(tf.constant(v), self.first_slices),
                                                [], xb)[0] for v in vectors]
            z.assign(tf.stack(parts))

    def predict(self, index: int, coords, flat, non_trainable):
        """(y_pred, regularisation losses) of data batch ``index`` at plane coordinates
        ``coords`` (k,) whose full weight vector is ``flat``."""
        z = self.z[index]
        weights = tf.concat([tf.ones([1], coords.dtype), coords], axis=0)
        h = self.activation(tf.tensordot(weights, z, axes=1))
        losses = []
        for layer, slices, nt, kwargs in zip(self.rest, self.rest_slices, self.rest_nt, self.kwargs):
            h, _, layer_losses = layer.stateless_call(
                self._weights(flat, slices), [non_trainable[i] for i in nt], h,
                return_losses=True, **kwargs)
            losses.extend(layer_losses)
        return h, losses


class LandscapeEvaluator:
    """Evaluates a compiled Keras model on fixed data at points of a plane through its weights.

    ``set_plane(centre, directions)`` fixes the plane; ``evaluate(coords)`` returns, for coords of
    shape (P, k), a dict of name -> (P,) float64 arrays: ``loss`` and every compiled metric.
    ``evaluate_weights(weights)`` does the same for full weight vectors (P, size).
    """

    def __init__(self, model, x, y, *, batch_size: int | None = None,
                 memory_budget_mb: float = 256.0, mode: str = "auto", shortcut: bool = True):
        if mode not in ("auto", "vectorized", "loop"):
            raise ValueError(f"The 'mode' parameter must be 'auto', 'vectorized' or 'loop'. "
                             f"Got {mode!r} instead.")
        self.model = model
        self.mode = mode
        x = np.asarray(x)
        y = np.asarray(y)
        self.n_examples = len(x)
        check_data(model, x, y)
        if not model.built or _compile_metrics(model) is None:
            # Builds the model, its loss and its metric containers on a couple of examples.
            model.evaluate(x[:2], y[:2], verbose=0)
        self.layout = WeightLayout.from_variables(model.trainable_variables)
        self._loss = _loss_callable(model)
        self._metrics = _compile_metrics(model)
        if self._metrics is not None:
            self._metrics.reset_state()
            self._metric_init = [v.numpy() for v in self._metrics.variables]
            self.metric_names = tuple(sorted(self._metrics.result().keys()))
        else:
            self._metric_init = []
            self.metric_names = ()
        self.names = ("loss",) + self.metric_names

        budget = memory_budget_mb * 2 ** 20
        act_bytes = 12 * _activations_per_example(model)  # float32 activations and ~2 temporaries each
        if batch_size is None:
            batch_size = max(1, min(self.n_examples, int(budget // (2 * act_bytes))))
        self.batch_size = int(min(batch_size, self.n_examples))
        per_point = 8 * self.layout.size + act_bytes * self.batch_size
        self.points_per_call = int(max(1, min(_MAX_POINTS_PER_CALL, budget // per_point)))
        self._batches = [(tf.constant(x[i:i + self.batch_size]), tf.constant(y[i:i + self.batch_size]))
                         for i in range(0, self.n_examples, self.batch_size)]
        self._non_trainable = [tf.constant(v.numpy()) for v in model.non_trainable_variables]
        self._centre = None
        self._directions = None
        self._compiled = {}
        self._use_loop = False
        self._allow_shortcut = bool(shortcut)
        self._budget = budget
        self.shortcut = None  # a FirstLayerShortcut once a plane is set, where one applies

    # ---------------------------------------------------------------- the plane

    def set_plane(self, centre, directions, non_trainable=None) -> "LandscapeEvaluator":
        """Fix the plane: centre (size,), directions (k, size); non-trainable values at the centre."""
        centre = np.asarray(centre, dtype=np.float32)
        directions = np.atleast_2d(np.asarray(directions, dtype=np.float32))
        if centre.shape != (self.layout.size,) or directions.shape[1:] != (self.layout.size,):
            raise ValueError(f"The plane does not fit the model: the model has {self.layout.size} "
                             f"trainable weights, the centre has shape {centre.shape} and the "
                             f"directions {directions.shape}.")
        if non_trainable is not None:
            self._non_trainable = [tf.constant(np.asarray(v)) for v in non_trainable]
            self._compiled = {}  # the compiled functions hold the old values as constants
        if self._directions is None or tuple(self._directions.shape) != directions.shape:
            self._centre = tf.Variable(centre, trainable=False)
            self._directions = tf.Variable(directions, trainable=False)
            self._compiled = {key: fn for key, fn in self._compiled.items() if key[0] != "coords"}
        else:
            self._centre.assign(centre)
            self._directions.assign(directions)
        k = directions.shape[0]
        if self._allow_shortcut and (self.shortcut is None or self.shortcut.k != k):
            applies = FirstLayerShortcut.applies(self.model, self.n_examples, k, self._budget / 2)
            self.shortcut = FirstLayerShortcut(self.model, self.layout, self._batches, k) if applies else None
            self._compiled = {key: fn for key, fn in self._compiled.items() if key[0] != "coords"}
        if self.shortcut is not None:
            self.shortcut.set_plane(centre, directions)
        return self

    # ---------------------------------------------------------------- evaluation

    def _point_values(self, flat_weights, coords=None):
        """Loss parts and metrics at one flat weight vector: a (2 + n_metrics,) float32 tensor.
        With ``coords`` (the point's plane coordinates) the first-layer shortcut is used."""
        if coords is None or self.shortcut is None:
            parts = tf.split(flat_weights, self.layout.sizes)
            weights = [tf.reshape(p, s) for p, s in zip(parts, self.layout.shapes)]

            def predict(index, xb):
                y_pred, _, losses = self.model.stateless_call(
                    weights, self._non_trainable, xb, training=False, return_losses=True)
                return y_pred, losses
        else:
            def predict(index, xb):
                return self.shortcut.predict(index, coords, flat_weights, self._non_trainable)
        loss_sum = tf.constant(0.0, tf.float32)
        reg_sum = tf.constant(0.0, tf.float32)
        metric_vars = [tf.constant(v) for v in self._metric_init]
        for index, (xb, yb) in enumerate(self._batches):
            y_pred, losses = predict(index, xb)
            loss_sum += tf.cast(self._loss(yb, y_pred), tf.float32) * float(xb.shape[0])
            if losses:  # regularisation, as Keras adds it to each batch's loss
                reg_sum += tf.add_n([tf.cast(v, tf.float32) for v in losses]) * float(xb.shape[0])
            if self._metrics is not None:
                metric_vars = self._metrics.stateless_update_state(metric_vars, yb, y_pred)
        values = [loss_sum / float(self.n_examples), reg_sum / float(self.n_examples)]
        if self._metrics is not None:
            result = self._metrics.stateless_result(metric_vars)
            values += [tf.cast(result[name], tf.float32) for name in self.metric_names]
        return tf.stack(values)

    def _function(self, which: str):
        """The compiled function for 'coords' or 'weights' input, built once per plane shape."""
        key = (which, self.method)
        if key not in self._compiled:
            if which == "coords":
                k = int(self._directions.shape[0])
                make = lambda c: self._centre + tf.linalg.matvec(  # noqa: E731
                    self._directions, c, transpose_a=True)
            else:
                k, make = self.layout.size, (lambda w: w)
            if which == "coords":
                point = lambda item: self._point_values(make(item), item)  # noqa: E731
            else:
                point = lambda item: self._point_values(make(item))  # noqa: E731
            if self.method == "loop":
                body = lambda batch: tf.map_fn(point, batch, fn_output_signature=tf.float32)  # noqa: E731
            else:
                # 'auto' first tries strict vectorisation and falls back to a loop over points;
                # 'vectorized' lets pfor loop over just the ops it cannot vectorise.
                strict = self.mode == "auto"
                body = lambda batch: tf.vectorized_map(  # noqa: E731
                    point, batch, fallback_to_while_loop=not strict)
            self._compiled[key] = tf.function(
                body, input_signature=[tf.TensorSpec([None, k], tf.float32)])
        return self._compiled[key]

    def _run(self, which: str, items: np.ndarray, parts: bool = False) -> dict[str, np.ndarray]:
        if which == "coords" and self._directions is None:
            raise RuntimeError("Call set_plane(centre, directions) before evaluate().")
        out = np.empty((len(items), len(self.names) + 1), dtype=np.float64)
        for start in range(0, len(items), self.points_per_call):
            chunk = tf.constant(items[start:start + self.points_per_call])
            out[start:start + len(chunk)] = self._call(which, chunk)
        if parts:
            names = ("loss_data", "regularization") + self.metric_names
            return {name: out[:, i] for i, name in enumerate(names)}
        values = {"loss": out[:, 0] + out[:, 1]}
        values.update({name: out[:, i + 2] for i, name in enumerate(self.metric_names)})
        return values

    def _call(self, which: str, chunk):
        try:
            if self.method == "vectorized" and self.mode == "auto":
                with _quiet_tensorflow():  # a failed vectorisation logs the whole graph node
                    return self._function(which)(chunk).numpy()
            return self._function(which)(chunk).numpy()
        except (ValueError, TypeError, NotImplementedError, tf.errors.OpError) as err:
            if self.method == "loop" or self.mode != "auto":
                raise
            # Some ops have no vectorised form; fall back to a compiled loop over points.
            log.info("vectorised evaluation unavailable (%s); using a compiled loop",
                     str(err).splitlines()[0] if str(err) else type(err).__name__)
            self._use_loop = True
            return self._function(which)(chunk).numpy()

    @property
    def method(self) -> str:
        """'vectorized' or 'loop': how points are batched in a compiled call."""
        return "loop" if (self.mode == "loop" or self._use_loop) else "vectorized"

    def evaluate(self, coords, parts: bool = False) -> dict[str, np.ndarray]:
        """Loss and metrics at plane coordinates of shape (P, k); dict of (P,) arrays.

        ``parts=True`` gives the loss as its two parts, ``loss_data`` (mean over the examples)
        and ``regularization``, so that shards of a dataset can be combined exactly.
        """
        coords = np.asarray(coords, dtype=np.float32)
        if coords.ndim == 1:
            coords = coords[:, None]
        return self._run("coords", coords, parts)

    def evaluate_weights(self, weights, parts: bool = False) -> dict[str, np.ndarray]:
        """Loss and metrics at full flat weight vectors of shape (P, size); dict of (P,) arrays."""
        return self._run("weights", np.atleast_2d(np.asarray(weights, dtype=np.float32)), parts)

    def check_shardable(self) -> None:
        """Refuse metrics that are not means over examples: those cannot be combined from shards."""
        if self._metrics is None:
            return
        for metric in self._metrics.metrics:
            if not isinstance(metric, keras.metrics.Mean):
                raise ValueError(f"The 'data.shards' setting needs metrics that are means over the "
                                 f"examples; the model's metric '{metric.name}' "
                                 f"({type(metric).__name__}) is not. Set data.shards=1 or compile "
                                 f"the model without it.")


def combine_shards(parts: list[dict], sizes: list[int]) -> dict[str, np.ndarray]:
    """Exact loss and metrics of a whole dataset from its shards' parts (``evaluate(parts=True)``).

    loss = sum(shard mean loss x shard size) / total size + regularisation (added once, taken
    from the first shard: it depends on the weights only); each metric is the size-weighted mean.
    """
    total = float(sum(sizes))
    weights = [n / total for n in sizes]
    out = {"loss": sum(w * p["loss_data"] for w, p in zip(weights, parts)) + parts[0]["regularization"]}
    for name in parts[0]:
        if name not in ("loss_data", "regularization"):
            out[name] = sum(w * p[name] for w, p in zip(weights, parts))
    return out


def evaluate_per_point(model, x, y, layout: WeightLayout, weights, batch_size: int | None = None,
                       non_trainable=None) -> dict[str, np.ndarray]:
    """Reference method: for each row of ``weights`` (P, size) set the model's weights and call
    ``model.evaluate``. Slow; used to check the fast path and as the benchmark's baseline.
    The model's own weights are restored afterwards."""
    saved = [v.numpy() for v in model.variables]
    if non_trainable is not None:
        for var, value in zip(model.non_trainable_variables, non_trainable):
            var.assign(value)
    results: dict[str, list] = {}
    try:
        for row in np.atleast_2d(weights):
            for var, value in zip(model.trainable_variables, layout.unflatten(row)):
                var.assign(value)
            out = model.evaluate(x, y, batch_size=batch_size or len(x), verbose=0, return_dict=True)
            for name, value in out.items():
                results.setdefault(name, []).append(float(value))
    finally:
        for var, value in zip(model.variables, saved):
            var.assign(value)
    return {name: np.array(values) for name, values in results.items()}


def points_to_weights(centre, directions, coords) -> np.ndarray:
    """``centre + coords @ directions`` for coords (P, k): full weight vectors (P, size) float32."""
    coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
    return (np.asarray(centre, np.float64) + coords @ np.asarray(directions, np.float64)).astype(np.float32)


def flops_per_example(model) -> float:
    """Floating-point operations of the Dense/Conv layers for one example's forward pass
    (2 x multiply-adds of each kernel at each output position)."""
    total = 0
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        out_shape = layer.output.shape[1:]
        positions = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
        total += 2 * positions * int(np.prod(kernel.shape))
    return float(total)
