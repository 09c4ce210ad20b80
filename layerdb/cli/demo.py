"""``layerdb demo``: the whole product, offline, on models trained here in a few minutes."""
from __future__ import annotations

import os
import time
from pathlib import Path

import click

from .common import console


@click.command("demo")
@click.option("--out", "out", default="layerdb-demo", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the models, store and report.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for data order and init.")
@click.option("--quick", is_flag=True, help="A reduced demo (2 tiny models, few steps): seconds.")
def demo(out: str, seed: int, quick: bool) -> None:
    """Train tiny Pythia-style models on the standard library's source, collect all their
    checkpoints through the Hugging Face loading path (offline), then query, chart and report.

    Needs the `collect` extra (torch, transformers). A rerun reuses the trained models and the
    collected results and finishes in seconds. The store is OUT/layerdb.duckdb; the --db option
    does not apply here.

    Example: layerdb demo --out layerdb-demo
    """
    out_dir = Path(out).resolve()
    # The demo's checkpoints live in an HF cache under OUT: point the hub client there, offline,
    # before huggingface_hub is imported (it reads these at import time).
    os.environ["HF_HOME"] = str(out_dir / "hf_home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.perf_counter()
    try:
        from collectors.demo.run import DemoOptions, run_demo
    except ImportError as exc:
        from ..errors import LayerdbError

        raise LayerdbError(f"the demo needs the collect extra ({exc.name} is missing): "
                           "pip install 'layerdb[collect]'") from None
    options = DemoOptions(out=out_dir, seed=seed, quick=quick)
    run = run_demo(options, console)
    from .demo_summary import print_summary

    print_summary(options, run, console, time.perf_counter() - start)


def register(main) -> None:
    main.add_command(demo)
