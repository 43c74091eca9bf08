#!/usr/bin/env python3
"""Compares two bench/results/compare-summary.json files (e.g. one kept from an earlier
commit): every figure both have, old -> new and the ratio.

  bench/summary_diff.py OLD.json NEW.json
"""
import json, sys

if len(sys.argv) != 3:
    sys.exit(__doc__)
old, new = (json.load(open(p)) for p in sys.argv[1:])
print(f"{'figure':72} {old['commit']:>10} {new['commit']:>10} {'ratio':>7}")
for key in sorted(set(old["figures"]) & set(new["figures"])):
    a, b = old["figures"][key], new["figures"][key]
    ratio = f"{b / a:.2f}x" if a else "-"
    print(f"{key:72} {a:10,.2f} {b:10,.2f} {ratio:>7}")
