"""Callbacks that act in the middle of a sweep, as an interruption, a kill or a lost node would."""

from landscape_dist.callbacks import SweepCallback


class Interrupt(Exception):
    """What :func:`stop` raises: a stand-in for Ctrl-C that no other code catches."""


def stop():
    raise Interrupt


class AfterTiles(SweepCallback):
    """Runs ``action`` (default :func:`stop`) once, after ``n`` tiles have come back."""

    def __init__(self, n, action=stop):
        self.n, self.action, self.seen, self.fired = n, action, 0, False

    def on_tile_end(self, name, tile, result):
        self.seen += 1
        if self.seen == self.n and not self.fired:
            self.fired = True
            self.action()
