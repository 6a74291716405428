"""How the configuration names what lower layers' messages speak of.

A lower layer raises a :class:`~landscape_dist.errors.LandscapeError` in its own words (the
``'source' parameter``); the library commands reword it with these (the ``'data.source'
setting``), and the command line rewords it once more with its flags (``--out``).
"""

SETTING_WORDS = {
    "model": "'model.source' setting",
    "data": "'data.source' setting",
    "shards": "'data.shards' setting",
    "one_shard": "data.shards=1",
    "centre": "'model.centre' setting",
    "unsafe": "model.unsafe_deserialization=true",
    "record_every": "train.record_every",
}
