"""The heaviest frames of py-spy's folded stacks (`python -m scripts.bench worker --profile
DIR` writes them): where a worker's CPU goes, as a share of its samples.

    python -m scripts.bench.flame_top DIR/service.txt [--top 25]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

MODULE = re.compile(r"\(([^():]+)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("stacks")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    with open(args.stacks, encoding="utf-8") as folded:
        for line in folded:
            stack, _, count = line.rstrip().rpartition(" ")
            samples = int(count)
            total += samples
            frames = stack.split(";")
            for frame in set(frames):
                inclusive[frame] += samples
            leaf = MODULE.search(frames[-1])
            path = leaf.group(1) if leaf else "?"
            package = path.split("site-packages/")[-1].split("/")[0] if path else "?"
            by_package[package] += samples
    print(f"{total} samples")
    print("\nself time by package (leaf frame):")
    for package, samples in by_package.most_common(12):
        print(f"  {samples / total:6.1%}  {package}")
    print("\ninclusive, heaviest frames:")
    for frame, samples in inclusive.most_common(args.top):
        print(f"  {samples / total:6.1%}  {frame[:140]}")


if __name__ == "__main__":
    main()
