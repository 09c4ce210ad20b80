"""Revision names -> training step (and tokens), and the checkpoint schedules of known families."""
from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

_PATTERNS = [
    # OLMo: step1000-tokens4B, stage1-step1000-tokens5B, stage2-ingredient1-step1000-tokens5B
    re.compile(r"^(?:[\w-]*?-)?step(?P<step>\d+)-tokens(?P<tokens>\d+)(?P<unit>[KMBT]?)$"),
    re.compile(r"^step(?P<step>\d+)$"),  # Pythia: step1000
    re.compile(r"^ckpt_(?P<step>\d+)$"),  # LLM360 (Amber, Crystal): ckpt_123
]


@dataclass(frozen=True)
class ParsedRevision:
    step: int | None
    tokens: int | None


def parse_revision(revision: str) -> ParsedRevision:
    """``step1000`` -> step 1000; ``step1000-tokens4B`` -> step 1000, 4e9 tokens; else NULLs."""
    for pattern in _PATTERNS:
        m = pattern.match(revision)
        if m:
            groups = m.groupdict()
            tokens = None
            if groups.get("tokens") is not None:
                tokens = int(groups["tokens"]) * _UNITS[groups.get("unit") or ""]
            return ParsedRevision(int(groups["step"]), tokens)
    return ParsedRevision(None, None)


# Pythia: step0, step1, 2, 4, ..., 512, then step1000 ... step143000 every 1000 (154 in all).
PYTHIA_STEPS = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
assert len(PYTHIA_STEPS) == 154


def log_steps(all_steps: list[int]) -> list[int]:
    """0, 1, 2, 4, ..., and powers-of-two multiples of 1000, plus the final step, as available."""
    final = max(all_steps)
    wanted = {0, final} | {2**i for i in range(64) if 2**i < 1000}
    wanted |= {1000 * 2**i for i in range(64) if 1000 * 2**i <= final}
    return sorted(s for s in all_steps if s in wanted)


def select_steps(spec: str, all_steps: list[int]) -> list[int]:
    """``all``, ``log`` or a comma list of steps (each must be in the schedule)."""
    spec = spec.strip()
    if spec == "all":
        return sorted(all_steps)
    if spec == "log":
        return log_steps(all_steps)
    try:
        steps = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--steps must be 'all', 'log' or a comma list of integers, not {spec!r}")
    known = set(all_steps)
    missing = [s for s in steps if s not in known]
    if missing:
        near = sorted({n for s in missing for n in nearest_steps(s, all_steps)})
        raise ValueError(f"step(s) {missing} are not in the checkpoint schedule (nearest: "
                         f"{', '.join(map(str, near))})")
    return steps


def nearest_steps(step: int, all_steps) -> list[int]:
    """The closest step of ``all_steps`` below ``step`` and the closest above (where they exist)."""
    below = [s for s in all_steps if s < step]
    above = [s for s in all_steps if s > step]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


def nearest_revisions(revision: str, known, n: int = 3) -> list[str]:
    """The known revisions nearest ``revision``: by step when its name carries one (the closest
    below and above), else by spelling."""
    import difflib

    known = sorted(known)
    step = parse_revision(revision).step
    by_step = {parse_revision(r).step: r for r in reversed(known) if parse_revision(r).step is not None}
    if step is not None and by_step:
        return [by_step[s] for s in nearest_steps(step, by_step)]
    return difflib.get_close_matches(revision, known, n=n, cutoff=0.5) or known[:n]
