"""What the demo trains and collects: the one definition of its models, full and ``--quick``.

Torch-free data.  ``FULL`` is sized for the demo's time budget on a 2-core CPU (a first run,
training included, within 3 minutes): a 6 x 128 model (as in DESIGN.md) and a deeper, narrower
12 x 64 one, so ``compare`` has two depths, 256 steps each (checkpoints step0, 1, 2, 4 ... 256).  ``QUICK`` is
a reduced demo for tests and a quick look: two small models, few steps, a small corpus.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoModelSpec:
    repo_id: str  # where it is cached, "ORG/NAME"
    n_layers: int
    d_model: int
    n_heads: int  # head size d_model / n_heads; a quarter of each head is rotary, as in Pythia
    steps: int  # optimizer updates; checkpoint "stepN" holds the weights after N of them
    warmup_steps: int
    seq_len: int = 128  # training context, also max_position_embeddings: collect with --seq-len <= this
    batch_size: int = 8  # sequences per step; at a fixed token budget, 8 beat 16 on held-out loss
    lr: float = 6e-3  # peak; tiny models want far more than Pythia's 1e-3 (1e-3: +0.7 nats held-out)
    min_lr_ratio: float = 0.1  # cosine decays to lr * this, as Pythia does
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


@dataclass(frozen=True)
class DemoSize:
    specs: tuple[DemoModelSpec, ...]
    max_docs: int | None  # standard-library files read for the corpus (None: all of them)
    eval_tokens: int  # held-out tokens per checkpoint, cut into sequences of each spec's seq_len
    batch_size: int = 32  # sequences per forward pass when collecting
    spans: tuple[int, ...] = (2,)  # span drops collected besides the single ones (metrics always)


DEMO_VOCAB_SIZE = 2048

FULL = DemoSize(
    specs=(
        DemoModelSpec("demo/pythia-6l", n_layers=6, d_model=128, n_heads=4, steps=256,
                      warmup_steps=26),
        DemoModelSpec("demo/pythia-12l", n_layers=12, d_model=64, n_heads=2, steps=256,
                      warmup_steps=26),
    ),
    max_docs=None,
    eval_tokens=8192,  # 64 sequences of 128
)

QUICK = DemoSize(
    specs=(
        DemoModelSpec("demo/quick-2l", n_layers=2, d_model=32, n_heads=2, seq_len=64, steps=24,
                      warmup_steps=4),
        DemoModelSpec("demo/quick-4l", n_layers=4, d_model=32, n_heads=2, seq_len=64, steps=24,
                      warmup_steps=4),
    ),
    max_docs=300,
    eval_tokens=4096,  # 64 sequences of 64
)
