#!/usr/bin/env python3
"""How much of the traffic phonenumbers' Chinese geocoding data places in a province and a city.

    .venv/bin/python scripts/region_coverage.py [SEEDS_DIR] [--draws N]

Three measures, each "resolved to a province" and "resolved to a city":

- simulator, exact: every 7-digit segment the simulator can generate (its 3-digit prefixes of
  simulate/payloads/common.py CARRIER_SEGMENTS followed by 4 uniform digits), weighted as
  random_phone draws them (carrier weight, then a uniform prefix of that carrier);
- simulator, drawn: N numbers from random_phone with a fixed seed (the same figure, sampled, as a
  check of the exact one);
- seeds: the distinct mainland mobile numbers written in the provider documents (SEEDS_DIR,
  default ../shared/seeds from the repository root).

Also per 3-digit prefix, the share of its segments placed, so the unresolved prefixes are named.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from sms_analytics.model.phone import BadPhone, normalize
from sms_analytics.model.region import UNKNOWN, region_of, region_of_segment
from sms_analytics.simulate.payloads.common import CARRIER_SEGMENTS, CARRIER_WEIGHTS, random_phone

_NUMBER = re.compile(r"(?<![0-9])(?:\+?86)?1[3-9][0-9]{9}(?![0-9])")


def simulator_exact() -> tuple[float, float, dict[str, float]]:
    province = city = 0.0
    per_prefix: dict[str, float] = {}
    for carrier, prefixes in CARRIER_SEGMENTS.items():
        weight = CARRIER_WEIGHTS[carrier] / len(prefixes) / 10_000
        for prefix in prefixes:
            placed = 0
            for i in range(10_000):
                region = region_of_segment(f"{prefix}{i:04d}")
                placed += region.province != ""
                province += weight * (region.province != "")
                city += weight * (region.city != "")
            per_prefix[prefix] = placed / 10_000
    return province, city, per_prefix


def simulator_drawn(draws: int) -> tuple[float, float]:
    rng = random.Random(17)
    province = city = 0
    for _ in range(draws):
        phone, _ = random_phone(rng)
        region = region_of(normalize(phone))
        province += region.province != ""
        city += region.city != ""
    return province / draws, city / draws


def seeds(directory: Path) -> tuple[int, int, int, dict[str, tuple[str, str]]]:
    numbers: dict[str, tuple[str, str]] = {}
    for path in sorted(directory.glob("*.txt")):
        for raw in _NUMBER.findall(path.read_text(encoding="utf-8", errors="replace")):
            try:
                phone = normalize(raw)
            except BadPhone:
                continue
            numbers[phone.national] = tuple(region_of(phone))  # type: ignore[assignment]
    placed = sum(r != tuple(UNKNOWN) for r in numbers.values())
    with_city = sum(r[1] != "" for r in numbers.values())
    return len(numbers), placed, with_city, numbers


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="?", type=Path, default=root.parent / "shared" / "seeds")
    parser.add_argument("--draws", type=int, default=100_000)
    args = parser.parse_args()

    province, city, per_prefix = simulator_exact()
    print(f"simulator, exact over {sum(len(p) for p in CARRIER_SEGMENTS.values()) * 10_000:,} segments: "
          f"province {province:.1%}, city {city:.1%}")
    drawn_province, drawn_city = simulator_drawn(args.draws)
    print(f"simulator, {args.draws:,} draws of random_phone (seed 17): "
          f"province {drawn_province:.1%}, city {drawn_city:.1%}")
    print("per prefix, share of its 10,000 segments placed:")
    for carrier, prefixes in CARRIER_SEGMENTS.items():
        print(f"  {carrier}: " + ", ".join(f"{p} {per_prefix[p]:.0%}" for p in prefixes))
    count, placed, with_city, numbers = seeds(args.seeds)
    print(f"seeds ({args.seeds}): {count} distinct mainland mobile numbers, "
          f"province {placed}/{count}, city {with_city}/{count}")
    for national, (prov, town) in sorted(numbers.items()):
        print(f"  {national}  {prov or '-'} {town or '-'}")


if __name__ == "__main__":
    main()
