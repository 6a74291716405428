"""One worker's strategy measurement serving every identical worker of a pool.

Workers are identical when their ``ready()`` descriptions carry the same ``identity`` (a digest of
the model, the data's shapes, the evaluation settings, the device kind and the threads: see
``LandscapeWorker.identity``). In each group of identical workers the first to start times the
strategies (the *leader*); the others are told to ``follow``: they evaluate with the default
strategy, without timing, until the leader's choice arrives and they ``adopt`` it. The pool asks
the leader for its choice between batches of results (one call in flight at a time), so the
scheduler's loop is untouched; the same works for every backend, in process or on Ray. A worker
that joins later (a replacement) leads a group whose leader is gone, adopts a choice already
made, or follows.
"""

from __future__ import annotations

import logging
from typing import Callable, Hashable

from .scheduler import JobFailed, WorkerLost

log = logging.getLogger(__name__)


class ChoiceSharing:
    """Leaders, followers and choices by identity for the workers of one pool (see the module's
    description). ``backend``: the pool's :class:`~.scheduler.Backend`."""

    def __init__(self, backend):
        self.backend = backend
        self.leaders: dict[str, Hashable] = {}  # identity -> the worker that times
        self.followers: dict[Hashable, str] = {}  # worker -> the identity it follows
        self.choices: dict[str, dict] = {}  # identity -> the leader's choices, by dataset
        self._asked: dict[str, object] = {}  # identity -> future of the leader's answer
        self._seen: set = set()
        self._live: set = set()

    def place(self, handle: Hashable, info: dict) -> None:
        """Give a started worker its part: adopt its group's choice where made, else lead a
        group without a live leader, else follow."""
        self._seen.add(handle)
        identity = info.get("identity")
        if identity is None:
            return
        if identity in self.choices:
            self.backend.send(handle, "adopt", self.choices[identity])
        elif self.leaders.get(identity) in (None, handle) or not self._alive(self.leaders[identity]):
            self.leaders[identity] = handle
            self._asked.pop(identity, None)
        else:
            self.followers[handle] = identity
            self.backend.send(handle, "follow")

    def _alive(self, handle) -> bool:
        return handle in self._live

    def expect(self, scheduler, jobs: int | None) -> None:
        """Before a run: hand on a choice that came in after the last run's results (a
        :meth:`poll`), and tell every worker how many jobs the run holds (None: unknown)."""
        self.poll(scheduler)
        for handle in scheduler.live:
            self.backend.send(handle, "expect_jobs", jobs)

    def _sync(self, scheduler) -> None:
        self._live = set(scheduler.live)
        for handle in scheduler.live:
            if handle not in self._seen:
                self.place(handle, scheduler.info.get(handle, {}))

    def poll(self, scheduler) -> None:
        """Place workers that joined; ask each group's leader for its choice (one call in
        flight at a time) and hand an answer to the group's followers."""
        self._sync(scheduler)
        for identity, leader in list(self.leaders.items()):
            if identity in self.choices:
                continue
            future = self._asked.get(identity)
            if future is None:
                self._asked[identity] = self.backend.send(leader, "shared_choices")
                future = self._asked[identity]
            if not self.backend.wait([future], 0.0):
                continue
            del self._asked[identity]
            try:
                choices = self.backend.result(future)
            except (WorkerLost, JobFailed):
                continue  # a lost leader: its replacement leads
            if choices is not None:
                self._share(identity, choices)

    def _share(self, identity: str, choices: dict) -> None:
        self.choices[identity] = choices
        followers = [h for h, i in self.followers.items() if i == identity]
        for handle in followers:
            if handle in self._live:
                self.backend.send(handle, "adopt", choices)
        log.debug("strategy choice shared with %d identical workers", len(followers))

    def wrap(self, scheduler, on_results: Callable) -> Callable:
        """``on_results`` followed by a :meth:`poll`, for the scheduler's loop."""
        def handled(batch):
            on_results(batch)
            self.poll(scheduler)
        return handled
