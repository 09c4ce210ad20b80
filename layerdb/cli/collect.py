"""``layerdb collect``: layer-ablation sweeps over a model's checkpoints, into the store.

The help lists defaults, components and families from their one definition (``collectors.settings``,
``layerdb.schema``, ``collectors.families``: all torch-free); the torch half is imported inside the
command only, so ``import layerdb.cli`` stays torch-free.
"""
from __future__ import annotations

import click

from collectors.families import supported
from collectors.settings import (DEFAULT_BATCH_SIZE, DEFAULT_CPUS_PER_TASK, DEFAULT_DATA,
                                 DEFAULT_MAX_RETRIES, DEFAULT_SEQ_LEN, DEFAULT_TOKENS, DTYPES,
                                 MAX_RETRIES_LIMIT)

from ..schema import ABLATED_COMPONENTS
from .common import LayerdbError, console, console_err, db_path

FAMILY_LIST = supported()


@click.command("collect")
@click.argument("model")
@click.option("--revision", "-r", "revisions", multiple=True, metavar="R",
              help="A hub revision (branch, tag or commit); repeat for more. Default: main.")
@click.option("--steps", metavar="SPEC",
              help="Select revisions by training step: all, log (0, 1, 2, 4 ... 512, 1000, 2000, "
                   "4000 ... and the final step) or a comma list of steps. The steps are those of "
                   "the revisions the hub (or else the HF cache) lists with a step in their name; "
                   "Pythia's published schedule serves only when neither can be read.")
@click.option("--data", metavar="SOURCE",
              help="Evaluation text: a .txt file (one document), .jsonl (field 'text'), .parquet "
                   "(column 'text') or hf:NAME[:SPLIT] (needs the datasets library). "
                   f"Default: {DEFAULT_DATA} (the first documents of the Pile, Pythia's training "
                   "data; downloaded once by datasets).")
@click.option("--tokens", type=int, default=DEFAULT_TOKENS, show_default=True, metavar="N",
              help="Evaluation tokens; the first floor(N / seq-len) sequences are used.")
@click.option("--seq-len", type=int, default=None, metavar="N",
              help=f"Tokens per sequence. Default: {DEFAULT_SEQ_LEN}, or the model's context if "
                   "shorter.")
@click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, metavar="N",
              help="Sequences per forward pass.")
@click.option("--components", default=",".join(ABLATED_COMPONENTS), show_default=True,
              metavar="LIST",
              help=f"Comma list of what to ablate per layer: {', '.join(ABLATED_COMPONENTS)}.")
@click.option("--dtype", default="auto", show_default=True, metavar="|".join(DTYPES),
              help="Weights dtype; auto = bfloat16 on GPU, float32 on CPU. The loss is always float32.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:i]",
              help="Where to run; auto = the first GPU if there is one.")
@click.option("--evict", is_flag=True,
              help="Delete each finished revision's files from the HF cache (a full Pythia-2.8B "
                   "sweep is ~860 GB), keeping the files that revisions still to come share.")
@click.option("--sweep-duplicates", is_flag=True,
              help="Also download and sweep revisions whose weights are another revision's (they "
                   "stay marked, and the charts leave them out).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: checkpoint after checkpoint in this process. ray: one Ray task per "
                   "checkpoint, one GPU each where the cluster has GPUs (needs "
                   "pip install 'layerdb[ray]'); this process stays the only writer of the store.")
@click.option("--ray-address", metavar="ADDRESS",
              help="With --executor ray: the Ray cluster to use (HOST:6379, auto or "
                   "ray://HOST:10001). Default: start a local Ray instance on this machine.")
@click.option("--cpus-per-task", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --executor ray: CPUs each task reserves (and its torch threads on CPU). "
                   f"[default: {DEFAULT_CPUS_PER_TASK}]")
@click.option("--max-retries", type=click.IntRange(0, MAX_RETRIES_LIMIT), default=None, metavar="N",
              help="With --executor ray: how often a checkpoint is retried when its worker dies "
                   "(killed, out of memory) or hits a CUDA or I/O error, before it is reported. "
                   f"Bad input is never retried. [default: {DEFAULT_MAX_RETRIES}]")
@click.pass_context
def collect(ctx, model: str, revisions: tuple[str, ...], steps: str | None, data: str | None,
            tokens: int, seq_len: int | None, batch_size: int, components: str, dtype: str,
            device: str, evict: bool, sweep_duplicates: bool, executor: str,
            ray_address: str | None,
            cpus_per_task: int | None, max_retries: int | None) -> None:
    """Sweep MODEL's checkpoints: the loss with nothing ablated and with each layer's block,
    attention or MLP removed, one transaction per checkpoint.

    MODEL is a Hugging Face repo id (loaded with from_pretrained(MODEL, revision=R); HF_HOME and
    HF_HUB_OFFLINE apply) or a local checkpoint folder. Checkpoints already complete for the same
    eval set are skipped, so re-running resumes. The store is held only while a checkpoint's rows
    are written: query it while a sweep runs.

    Before any download, the weights of every planned revision are audited on the hub (see
    `layerdb audit`): of revisions with identical weights only the one with the highest step is
    downloaded and swept; the others get a checkpoint row marked with its name (same_weights_as)
    and no results. Where the hub gives no digest, identical weights found after loading are not
    swept either. A download failing with a server error is tried 4 times in all, 1, 4 and 16 s
    apart; a revision that still fails is reported at the end and the others are collected.

    Families: {families}.

    With --executor ray each checkpoint is a Ray task on a cluster (or a local Ray instance);
    tasks return their rows and this process writes them as they arrive. A task whose worker dies
    is retried, then reported; Ctrl-C cancels the rest and leaves whole checkpoints only.

    Example: layerdb --db pythia.duckdb collect EleutherAI/pythia-160m --steps log --evict
    """
    names = [c.strip() for c in components.split(",") if c.strip()]
    if names == ["all"]:
        names = list(ABLATED_COMPONENTS)
    if executor != "ray":
        given = {"--ray-address": ray_address, "--cpus-per-task": cpus_per_task,
                 "--max-retries": max_retries}
        ray_only = [name for name, value in given.items() if value is not None]
        if ray_only:
            raise LayerdbError(f"{', '.join(ray_only)}: only with --executor ray")
    from collectors.collect import LocalExecutor, collect as run_collect

    if executor == "ray":
        from collectors.ray_executor import RayExecutor

        chosen = RayExecutor(address=ray_address,
                             max_retries=_or(max_retries, DEFAULT_MAX_RETRIES),
                             cpus_per_task=_or(cpus_per_task, DEFAULT_CPUS_PER_TASK))
    else:
        chosen = LocalExecutor()
    report = run_collect(db_path(ctx), model, executor=chosen, revisions=revisions, steps=steps,
                         data=data, tokens=tokens, seq_len=seq_len, batch_size=batch_size,
                         components=tuple(names), dtype=dtype, device=device, evict=evict,
                         sweep_duplicates=sweep_duplicates, console=console_err)
    not_swept = sum(r not in report.written for r in report.duplicates)
    console.print(
        f"{report.model}: {len(report.written)} checkpoint(s) collected, {len(report.skipped)} "
        f"already complete" + (f", {not_swept} not swept (another revision's weights)"
                               if not_swept else "")
        + f", eval set {report.eval_set}", highlight=False)


collect.help = collect.help.replace("{families}", FAMILY_LIST)


def _or(value, default):
    return default if value is None else value


def register(main) -> None:
    main.add_command(collect)
