"""``layerdb demo``: train tiny Pythia-style models on the standard library's source, collect their
checkpoints through the same hub path a real model takes, then query, chart and report them.

``HF_HOME`` must point at ``<out>/hf_home`` (with ``HF_HUB_OFFLINE=1``) before huggingface_hub is
imported; the CLI sets both before it imports this module.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .collect import collect
from .demo_train import DemoModelSpec, DemoTraining, rich_progress_callback, train_demo

# The demo proper, sized for the 3-minute budget on a 2-core CPU: a 6 x 128 model (as in
# DESIGN.md) and a deeper, narrower 12 x 64 one, so `compare` has two depths.
DEMO_SPECS = (
    DemoModelSpec("demo/pythia-6l", n_layers=6, d_model=128, n_heads=4, batch_size=8, steps=300,
                  lr=6e-3, warmup_steps=30),
    DemoModelSpec("demo/pythia-12l", n_layers=12, d_model=64, n_heads=2, batch_size=8, steps=300,
                  lr=6e-3, warmup_steps=30),
)

# A reduced demo for tests and a quick look: two small models, few steps, a small corpus.
QUICK_SPECS = (
    DemoModelSpec("demo/quick-2l", n_layers=2, d_model=32, n_heads=2, seq_len=64, batch_size=8,
                  steps=24, warmup_steps=4),
    DemoModelSpec("demo/quick-4l", n_layers=4, d_model=32, n_heads=2, seq_len=64, batch_size=8,
                  steps=24, warmup_steps=4),
)


@dataclass(frozen=True)
class DemoOptions:
    out: Path
    seed: int = 0
    quick: bool = False
    eval_tokens: int = 8192  # held-out tokens per checkpoint: 64 sequences of 128
    batch_size: int = 32

    @property
    def db_path(self) -> Path:
        return self.out / "layerdb.duckdb"


@dataclass
class DemoRun:
    training: DemoTraining
    seconds: dict[str, float]


def run_demo(options: DemoOptions, console: Console) -> DemoRun:
    """Train (or reuse), collect (or skip what is complete), and write the report and heatmap."""
    options.out.mkdir(parents=True, exist_ok=True)
    specs = QUICK_SPECS if options.quick else DEMO_SPECS
    seconds = {}
    start = time.perf_counter()
    console.rule("[bold]1. training tiny Pythia-style models on the standard library's source")
    with _progress(console) as progress:
        training = train_demo(options.out, seed=options.seed, specs=specs,
                              max_docs=300 if options.quick else None,
                              progress=rich_progress_callback(progress))
    seconds["train"] = time.perf_counter() - start

    start = time.perf_counter()
    console.rule("[bold]2. collecting every checkpoint: baseline + block/attn/mlp of every layer")
    eval_tokens = 4096 if options.quick else options.eval_tokens
    for spec, trained in zip(specs, training.models):
        collect(str(options.db_path), trained.repo_id,
                revisions=trained.revisions + ["main"], data=str(training.heldout_path),
                tokens=eval_tokens, seq_len=spec.seq_len, batch_size=options.batch_size,
                device="cpu", console=console)
    seconds["collect"] = time.perf_counter() - start

    start = time.perf_counter()
    write_outputs(options, specs[0].repo_id, console)
    seconds["report"] = time.perf_counter() - start
    return DemoRun(training, seconds)


def write_outputs(options: DemoOptions, heatmap_model: str, console: Console) -> None:
    from layerdb import Store
    from layerdb.charts import write_chart
    from layerdb.report import write_report

    console.rule("[bold]3. report and charts")
    with Store.open(options.db_path, read_only=True) as store:
        write_report(store, options.out / "report.html")
        write_chart(store, "heatmap", options.out / "heatmap.png", model=heatmap_model)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console, transient=False)


__all__ = ["DemoOptions", "DemoRun", "run_demo", "QUICK_SPECS", "DEMO_SPECS"]
