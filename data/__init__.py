"""Data: the crash-safe episode store and recorder, exports/imports, time-aligned loaders, tools.

`data.store` (layout, reader), `data.writer` (append-only episodes, crash recovery), `data.video`
(background AV1/H.264 encoding, decoding), `data.align` (alignment by timestamp),
`data.features` (which stream becomes which training feature).
"""

from data.features import Feature, default_features, feature_values, parse_features
from data.store import EpisodeReader, EpisodeStore, StoreError, StreamSpec

__all__ = [
    "EpisodeReader", "EpisodeStore", "Feature", "StoreError", "StreamSpec", "default_features", "feature_values",
    "parse_features",
]
