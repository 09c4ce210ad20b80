"""benchmarks/hub.py runs (tiny settings) and prints what its docstring promises; its speed is
measured by running it, not here."""
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "hub.py"


def test_the_hub_benchmark_runs_and_ends_with_the_prefetch_ratio():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--revisions", "2", "--layers", "2",
                           "--width", "32", "--tokens", "128", "--seq-len", "32",
                           "--bytes-per-s", "1e6"],  # no calibration run: one process less
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    number = r"\d+\.\d\d"
    patterns = [
        r"hub benchmark: 2 revisions of a 2 x 32 GPT-NeoX, \d+\.\d MB of weights each, "
        r"128 tokens per sweep",
        rf"hub throttled to {number} MB/s: {number} s to download a revision's weights",
        rf"prefetch off:  wall +{number} s, downloading +{number} s, sweeping +{number} s",
        rf"prefetch on:   wall +{number} s, downloading +{number} s, sweeping +{number} s",
        rf"prefetch ratio {number}",
    ]
    assert len(lines) == len(patterns), proc.stdout
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), (line, pattern)
