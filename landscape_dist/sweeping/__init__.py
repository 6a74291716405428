"""Sweeping: what a sweep is prepared from, the pool it runs on, and one slice's sweep. The
``sweep`` command (:mod:`landscape_dist.commands.sweep`) puts them together."""
