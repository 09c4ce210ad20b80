"""The torch half of layerdb: load checkpoints, run layer-ablation sweeps, hand rows to the store.

Imports layerdb; layerdb never imports this package except lazily inside `collect`/`demo`.
"""
