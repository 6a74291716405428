import os

# Before Ray or TensorFlow are imported: keep Ray's sockets on loopback, quiet TensorFlow.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import atexit  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

# No test keeps strategy choices in the user's cache directory: one place for the session (Ray
# workers inherit this environment), a fresh one for each test in this process (below).
os.environ["LANDSCAPE_DIST_TUNING_CACHE"] = tempfile.mkdtemp(prefix="landscape_dist-tuning-")
atexit.register(shutil.rmtree, os.environ["LANDSCAPE_DIST_TUNING_CACHE"], ignore_errors=True)

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def simulated_cluster():
    """A simulated two-node Ray cluster on this machine (1 CPU per node, loopback only), shared
    by every test that needs Ray. Tests that remove a node add one back before they end."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_cluster(simulated_cluster):
    """The ``ray`` module, connected to the shared two-node cluster (2 CPUs in all)."""
    import ray

    yield ray


@pytest.fixture
def axes_kind():
    """The test plane kind ``axes`` (``extension_plugins.AxesPlane``) registered for one test."""
    from extension_plugins import AxesPlane
    from landscape_dist.registry import PLANE_KINDS

    PLANE_KINDS.register("axes")(AxesPlane)
    yield AxesPlane
    PLANE_KINDS.remove("axes")


@pytest.fixture(autouse=True)
def _tuning_cache(monkeypatch, tmp_path_factory):
    """Each test's strategy choices kept in a directory of its own."""
    monkeypatch.setenv("LANDSCAPE_DIST_TUNING_CACHE", str(tmp_path_factory.mktemp("tuning")))


@pytest.fixture(autouse=True)
def _ray_only_on_the_shared_cluster(request):
    """A test not marked ``ray`` that starts Ray in this process fails: it would start a second
    cluster beside the shared one (the ``ray`` tests run together on one pytest-xdist worker)."""
    def started() -> bool:
        ray = sys.modules.get("ray")
        return bool(ray is not None and ray.is_initialized())

    before = started()
    yield
    if not before and started() and not request.node.get_closest_marker("ray"):
        pytest.fail("This test started Ray in the test process without the ray_cluster fixture.")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Tests on the shared Ray cluster are marked ``ray``, tests that start a child process
    ``subprocess``; both are ``slow``: ``pytest -m "not slow"`` is the quick loop. The ``ray``
    tests form one pytest-xdist group: one worker runs them all, on one shared cluster."""
    import inspect

    for item in items:
        names = getattr(item, "fixturenames", ())
        try:
            source = inspect.getsource(item.function)
        except (OSError, TypeError, AttributeError):
            source = ""
        marks = []
        if ("ray_cluster" in names or "simulated_cluster" in names
                or item.get_closest_marker("ray")):  # a parameter marked ray asks for it itself
            marks.append("ray")
        if "subprocess" in source or "sys.executable" in source:
            marks.append("subprocess")
        for mark in marks + (["slow"] if marks else []):
            item.add_marker(getattr(pytest.mark, mark))
        if "ray" in marks:
            item.add_marker(pytest.mark.xdist_group("ray"))
