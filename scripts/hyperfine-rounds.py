#!/usr/bin/env python3
"""Compare short commands on a noisy machine: interleaved hyperfine rounds.

usage: scripts/hyperfine-rounds.py ROUNDS COMMAND...

Each round is one `hyperfine -N` run of every command (5 warm-ups, 25
runs), in the given order on even rounds and reversed on odd ones, so
that a slow stretch of the machine falls on all commands alike. Prints,
per command, the median of the per-round medians, their range, and the
ratio to the first command. BENCHMARKS.md ("pub startup") uses it.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds, cmds = int(sys.argv[1]), sys.argv[2:]
    medians = {c: [] for c in cmds}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "round.json")
        for r in range(rounds):
            order = cmds if r % 2 == 0 else list(reversed(cmds))
            subprocess.run(["hyperfine", "-N", "-w", "5", "-r", "25", "--export-json", out, *order],
                           stdout=subprocess.DEVNULL, check=True)
            with open(out) as f:
                for res in json.load(f)["results"]:
                    medians[res["command"]].append(res["median"] * 1000)
    base = statistics.median(medians[cmds[0]])
    for c in cmds:
        m = statistics.median(medians[c])
        print(f"{m:6.2f} ms  (rounds {min(medians[c]):.2f}-{max(medians[c]):.2f})  x{m / base:4.2f}  {c}")


if __name__ == "__main__":
    main()
