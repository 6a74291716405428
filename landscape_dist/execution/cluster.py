"""The Ray cluster: joining it (or starting a local one) and checking it can hold a pool."""

from __future__ import annotations

import logging
import math
import os
import socket
import time

from ..config.schema import ClusterConfig
from ..errors import LandscapeError


_STARTED_WITHOUT_GPUS = None  # the address of a local Ray this process started with no GPU visible


def connect_ray(address: str | None = None, timeout_s: float = 60.0,
                hide_gpus: bool = False) -> None:
    """Join the Ray cluster at ``address``, or start a fresh local one (no-op if connected).
    ``hide_gpus``: a local Ray is started with no GPU visible to its processes, so CPU workers
    inherit that from Ray's own environment and can start on the worker processes Ray starts
    ahead (an actor with a runtime environment of its own waits for new ones)."""
    global _STARTED_WITHOUT_GPUS
    import ray

    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address and address != "local":
        if address != "auto":
            check_reachable(address, timeout_s)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"The 'cluster.address' setting is {address!r}, but Ray cannot join a "
                             f"cluster there ({reason}). Start one with 'ray start --head', or "
                             f"leave cluster.address unset for a local Ray.") from None
        return
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hide_gpus:  # Ray's processes copy this process's environment when they start
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        ray.init(address="local", **kwargs)  # never joins a stale cluster left by a killed driver
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    _STARTED_WITHOUT_GPUS = ray.get_runtime_context().gcs_address if hide_gpus else None
    from .reaper import start_reaper

    start_reaper()  # the Ray started here must not outlive this process, however it ends


def gpus_hidden() -> bool:
    """Whether the Ray this process is connected to was started here with no GPU visible."""
    import ray

    return (ray.is_initialized() and _STARTED_WITHOUT_GPUS is not None
            and ray.get_runtime_context().gcs_address == _STARTED_WITHOUT_GPUS)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast, with the setting named, when nothing listens at a 'host:port' address
    (Ray itself would keep retrying for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"The 'cluster.address' setting must be 'auto', 'local' or 'host:port'. "
                         f"Got {address!r} instead.")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout_s, 10.0)):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ValueError(f"The 'cluster.address' setting is {address!r}, but no Ray cluster answers "
                         f"there ({reason}). Start one with 'ray start --head' or give the address "
                         f"'ray status' prints on the head node.") from None


def actor_resources(cluster: ClusterConfig) -> dict:
    """The Ray resource request of one worker actor (``cluster`` resolved)."""
    return {"num_cpus": cluster.cpus_per_worker, "num_gpus": cluster.gpus_per_worker}


def check_resources(cluster: ClusterConfig, wait_s: float = 15.0) -> ClusterConfig:
    """``cluster`` resolved against the connected Ray cluster, once it is known to hold the pool.

    Refuses a pool larger than the cluster's CPUs or GPUs (its actors would wait forever), then
    waits up to ``wait_s`` for resources held by just-killed actors to come back, and refuses a
    pool that still does not fit in what is free.
    """
    import ray

    total = ray.cluster_resources()
    cluster = cluster.resolve(total)
    need_cpu, need_gpu = cluster.need
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if need_gpu > gpus:
        raise ValueError(f"The 'cluster.gpus_per_worker' setting asks for {need_gpu:g} GPUs in all "
                         f"({cluster.num_workers} workers x {cluster.gpus_per_worker:g}), but the Ray "
                         f"cluster has {gpus:g}. Lower cluster.num_workers or cluster.gpus_per_worker.")
    if need_cpu > cpus:
        raise ValueError(f"The 'cluster.num_workers' setting asks for {need_cpu:g} CPUs in all "
                         f"({cluster.num_workers} workers x {cluster.cpus_per_worker:g}), but the Ray "
                         f"cluster has {cpus:g}. Lower cluster.num_workers or cluster.cpus_per_worker.")
    deadline = time.monotonic() + wait_s
    while True:
        free = ray.available_resources()
        enough = (need_cpu <= free.get("CPU", 0.0) + 1e-9 and need_gpu <= free.get("GPU", 0.0) + 1e-9)
        if enough or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not enough:
        raise ValueError(f"The 'cluster.num_workers' setting asks for {cluster.num_workers} workers "
                         f"({need_cpu:g} CPUs, {need_gpu:g} GPUs), but only {free.get('CPU', 0.0):g} "
                         f"CPUs and {free.get('GPU', 0.0):g} GPUs of the Ray cluster are free. "
                         f"Close other pools or lower cluster.num_workers.")
    return cluster


_WAIT_WORDS = {"address": "'address' parameter", "nodes": "'nodes' parameter",
               "timeout": "'timeout_s' parameter"}


def check_wait_arguments(address, nodes, timeout_s) -> None:
    """Refuse, before any waiting, an address that is neither 'auto' nor 'host:port' (port 1 to
    65535), a node count that is not an integer >= 1, or a timeout that is not a finite number
    of seconds > 0 (LandscapeError, its slots the parameters' names)."""
    hostport = address.split("://", 1)[-1] if isinstance(address, str) else ""
    host, sep, port = hostport.rpartition(":")
    if address != "auto" and not (sep and host.strip("[]") and port.isdigit()
                                  and 1 <= int(port) <= 65535):
        raise LandscapeError(f"The {{address}} must be 'auto' or 'host:port' (the head's address "
                             f"that 'ray start --head' prints). Got {address!r} instead.",
                             _WAIT_WORDS)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise LandscapeError(f"The {{nodes}} must be an integer >= 1. Got {nodes!r} instead. Give "
                             f"the number of nodes to wait for, the head included.", _WAIT_WORDS)
    if (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
            or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise LandscapeError(f"The {{timeout}} must be a finite number of seconds > 0. Got "
                             f"{timeout_s!r} instead. Give how long to wait, for example 300.",
                             _WAIT_WORDS)


def wait_for_cluster(address: str, nodes: int, timeout_s: float = 300.0) -> dict:
    """Wait until the Ray cluster at ``address`` answers and ``nodes`` nodes are alive in it
    (batch scripts start the head and workers and must not guess how long they take). Returns
    the nodes and resources; raises a one-line ValueError when the time runs out, or at once
    when an argument is wrong (see :func:`check_wait_arguments`)."""
    check_wait_arguments(address, nodes, timeout_s)
    deadline = time.monotonic() + timeout_s
    if address != "auto":
        while True:  # the head's port first: Ray's own connect would retry for minutes
            try:
                check_reachable(address, timeout_s=5.0)
                break
            except ValueError:
                if time.monotonic() > deadline:
                    raise LandscapeError(f"The Ray head at {address!r} did not answer within "
                                         f"{timeout_s:g} s. Check the head's log, or wait longer "
                                         f"(the {{timeout}}).", _WAIT_WORDS) from None
                time.sleep(0.5)
    import ray

    joined = not ray.is_initialized()
    connect_ray(address)
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= nodes:
                return {"nodes": len(alive), "resources": ray.cluster_resources()}
            if time.monotonic() > deadline:
                raise LandscapeError(f"The Ray cluster at {address!r} has {len(alive)} of the "
                                     f"{nodes} nodes asked for after {timeout_s:g} s. Check the "
                                     f"workers' logs, or wait longer (the {{timeout}}).",
                                     _WAIT_WORDS)
            time.sleep(0.5)
    finally:
        if joined:
            ray.shutdown()
