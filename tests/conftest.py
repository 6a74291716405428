import os

# Before Ray or TensorFlow are imported: keep Ray's sockets on loopback, quiet TensorFlow.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray instance (2 CPUs, loopback only) shared by every test that needs it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
