#!/usr/bin/env python3
"""Sums Nsight Compute kernel durations and DRAM reads per kernel name from a CSV made with
  ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum ... > FILE.csv
usage: ncu_kernels.py FILE.csv [--per N]   (--per: divide by N, e.g. the number of decode steps)"""
import csv
import sys
from collections import defaultdict

path = sys.argv[1]
per = float(sys.argv[sys.argv.index("--per") + 1]) if "--per" in sys.argv else 1.0
time_us, dram_mb, calls = defaultdict(float), defaultdict(float), defaultdict(int)
with open(path, newline="") as f:  # other output (the program's, ncu's ==PROF== lines) may come first
    rows = list(csv.reader(f))
start = next(i for i, r in enumerate(rows) if "Kernel Name" in r and "Metric Value" in r)
header, rows = rows[start], rows[start:]
col = {name: header.index(name) for name in ("ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value")}
for r in rows[1:]:
    if len(r) != len(header):
        continue
    name = r[col["Kernel Name"]].split("(")[0].split("<")[0].strip()
    value = float(r[col["Metric Value"]].replace(",", ""))
    unit = r[col["Metric Unit"]]
    metric = r[col["Metric Name"]]
    if metric == "gpu__time_duration.sum":
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}[unit]
        time_us[name] += value * scale
        calls[name] += 1
    elif metric == "dram__bytes_read.sum":
        scale = {"B": 1e-6, "byte": 1e-6, "KB": 1e-3, "Kbyte": 1e-3, "MB": 1.0, "Mbyte": 1.0, "GB": 1e3,
                 "Gbyte": 1e3}[unit]
        dram_mb[name] += value * scale
total = sum(time_us.values())
print(f"{'kernel':48s} {'calls':>7s} {'us':>10s} {'MB read':>10s} {'GB/s':>8s} {'share':>6s}")
for name in sorted(time_us, key=time_us.get, reverse=True):
    t, mb = time_us[name] / per, dram_mb[name] / per
    print(f"{name[:48]:48s} {calls[name] / per:7.1f} {t:10.1f} {mb:10.2f} {mb / t * 1e3 if t else 0:8.1f} "
          f"{100 * time_us[name] / total:5.1f}%")
print(f"{'total':48s} {'':7s} {total / per:10.1f}")
