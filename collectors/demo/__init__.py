"""``layerdb demo``: train tiny Pythia-style models on the standard library's source, collect their
checkpoints through the same hub path a real model takes, then query, chart and report them.

- ``specs``: the models, full and ``--quick`` (torch-free data);
- ``corpus``: the text and the byte-level BPE tokenizer;
- ``train``: the training loop, checkpoints cached as hub revisions;
- ``run``: the whole demo (``run_demo(DemoOptions(...), console)``).
"""
