"""``layerdb audit``: which revisions of a model serve the same weights, before any download.

The work is collectors.integrity's (torch-free); it is imported inside the command, like collect.
"""
from __future__ import annotations

import click

from .common import console_err, db_path, output_options, print_rows


@click.command("audit")
@click.argument("model")
@click.option("--revision", "-r", "revisions", multiple=True, metavar="R",
              help="A hub revision (branch, tag or commit); repeat for more. Default: main.")
@click.option("--steps", metavar="SPEC",
              help="Select revisions by training step, as collect does: all, log or a comma list.")
@output_options
@click.pass_context
def audit(ctx, model: str, revisions: tuple[str, ...], steps: str | None, fmt: str,
          output: str | None) -> None:
    """List MODEL's planned revisions with their weight files, bytes and weights digest (sha256
    over the hub's LFS sha256 of the weight files), without downloading any weights; offline,
    the HF cache answers.

    same_weights_as names the revision that keeps the results of identical weights: the one with
    the highest step, among the planned revisions and those of the store (--db); `collect` would
    neither download nor sweep a revision that has one. An empty digest is unknown until the
    weights are loaded (files without LFS metadata, a local folder); note says why.

    Example: layerdb audit EleutherAI/pythia-2.8b --steps log
    """
    from collectors.checkpoints import plan_revisions, resolve_model
    from collectors.integrity import audit_revisions, audit_table
    from collectors.writer import stored_checkpoints

    ref = resolve_model(model)
    audits = audit_revisions(ref, plan_revisions(ref, revisions, steps))
    table = audit_table(ref, audits, stored_checkpoints(db_path(ctx), ref.name))
    print_rows(table, fmt, output, title=f"audit of {ref.name}")
    duplicates = table[table["same_weights_as"].notna()]
    unknown = int(table["weights_digest"].isna().sum())
    console_err.print(
        f"{len(table)} revision(s): {len(duplicates)} with another's weights "
        f"({_size(int(duplicates['weight_bytes'].fillna(0).sum()))} that collect would not "
        f"download), {unknown} with a digest unknown until loaded", highlight=False)


def _size(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def register(main) -> None:
    main.add_command(audit)
