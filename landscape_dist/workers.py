"""The Ray actor: a model replica with its data and the current plane, evaluating tiles."""

from __future__ import annotations

import os


def configure_tensorflow(threads: int | None, use_gpu: bool) -> None:
    """Match TensorFlow's thread pools to the CPUs granted (None: leave them); turn on GPU
    memory growth. Must run before the first TensorFlow op of the process."""
    import tensorflow as tf

    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
    if use_gpu:
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass


class LandscapeWorker:
    """Holds its own model replica, its data and an evaluator; stateless apart from those.

    Built from a :class:`~landscape_dist.models.ModelSpec` and a
    :class:`~landscape_dist.models.DataSpec`; the plane arrives from the object store.
    """

    def __init__(self, model_spec, data_spec, evaluation, threads: int | None = None,
                 use_gpu: bool = False, remote: bool = False, shard: int = 0):
        configure_tensorflow(threads, use_gpu)
        from .evaluator import LandscapeEvaluator

        self.error = None
        try:
            model = model_spec.build()
            x, y = data_spec.load(shard)
            self.evaluator = LandscapeEvaluator(model, x, y, batch_size=evaluation.batch_size,
                                                memory_budget_mb=evaluation.memory_budget_mb,
                                                mode=evaluation.mode)
            if data_spec.num_shards > 1:
                self.evaluator.check_shardable()
        except ValueError as err:  # bad input (model, data): reported by ready(), not retried
            if not remote:
                raise
            self.error = str(err)

    def ready(self) -> dict:
        """Describes the worker once it is built: pid, Ray node id, quantity names, points per
        call; or ``{'error': message}`` when the model or data given cannot be used."""
        import ray

        if self.error is not None:
            return {"error": self.error}

        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return {"pid": os.getpid(), "node": node, "names": self.evaluator.names,
                "examples": self.evaluator.n_examples,
                "points_per_call": self.evaluator.points_per_call,
                "batch_size": self.evaluator.batch_size}

    def set_plane(self, centre, directions, non_trainable) -> bool:
        self.evaluator.set_plane(centre, directions, non_trainable)
        return True

    def evaluate(self, kind: str, items):
        """Loss parts and metrics (``LandscapeEvaluator.evaluate(parts=True)``) at plane
        coordinates (kind 'coords') or flat weight vectors ('weights') on this worker's data."""
        if kind == "coords":
            return self.evaluator.evaluate(items, parts=True)
        return self.evaluator.evaluate_weights(items, parts=True)
