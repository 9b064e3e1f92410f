#!/usr/bin/env python3
"""Where a decode step's time goes, from a kernel timeline made with
  GLINT_CUDA_KERNEL_TRACE=FILE.csv glint bench --synthetic ... --backend cuda
(src/backend/cuda/cuda_trace.cu: CUPTI records of every kernel, graph replays and side streams included).

The step is the CUDA graph with the most kernels among those replayed at least twice, together with
the graphs replayed in turn with it as often (glint replays a decode step's layer stack in pieces);
its last --replays N replays are summarized: wall time per replay (the first kernel of the step's
graphs to the last), time with no kernel running, and per kernel name the calls, the time the kernels
ran (end - start) and their share of the wall time, each instant split evenly among the kernels
running then (so overlapped kernels share, and the shares plus the idle time add up to the wall
time), and per stream the time it had a kernel running. Between consecutive replays: the step
(one replay's start to the next's), and the kernels that ran outside any graph then. --timeline prints
the last replay kernel by kernel (start offset, duration, stream); --host prints, from FILE.csv.host.csv
(the same run's CUDA runtime calls on the host, copies and memsets), everything between the last two
replays (offsets from the end of the first). --windows US: the timeline cut after each kernel that ran
US microseconds or longer (an lm_head GEMV ends every forward: a speculative step's verify forward and
its MTP draft tell apart by their lm_heads' lengths), the last --replays N windows' lengths.
usage: trace_summary.py FILE.csv [--replays N] [--timeline] [--host] [--windows US]"""
import csv
import re
import sys
from collections import defaultdict


def base_name(mangled):
    """gemv_vec_kernel from _Z15gemv_vec_kernelILi1E..., the last part of a nested name
    (indexer_scores_tc_kernel from _ZN48_GLOBAL__N__..._cuda_indexer_cu_52b6c8e024indexer_scores_tc_kernelILi4E...,
    a kernel in an anonymous namespace), or the name as given when not mangled."""
    m = re.match(r"_Z(\d+)", mangled)
    if m:
        n = int(m.group(1))
        return mangled[len(m.group(0)):len(m.group(0)) + n]
    if mangled.startswith("_ZN"):
        at, last = 3, None
        while True:
            m = re.match(r"\d+", mangled[at:])
            if not m:
                break
            n = int(m.group(0))
            last = mangled[at + len(m.group(0)):at + len(m.group(0)) + n]
            at += len(m.group(0)) + n
        if last:
            return last
    return mangled.split("(")[0].split("<")[0].replace("void ", "").strip()


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append(dict(name=base_name(r["name"]), stream=int(r["stream"]), start=int(r["start_ns"]),
                             end=int(r["end_ns"]), graph=int(r["graph"]), node=int(r["graph_node"])))
    rows.sort(key=lambda r: r["start"])
    return rows


def replays_of(rows):
    """{graph id: [replay: [kernel rows]]}: a graph's records in start order, a new replay whenever a node
    comes back."""
    by_graph = defaultdict(list)
    for r in rows:
        if r["graph"]:
            by_graph[r["graph"]].append(r)
    out = {}
    for g, recs in by_graph.items():
        reps, seen = [[]], set()
        for r in recs:
            if r["node"] in seen:
                reps.append([])
                seen = set()
            seen.add(r["node"])
            reps[-1].append(r)
        out[g] = reps
    return out


def step_replays(graphs, g):
    """(graph ids, [replay: kernel rows in start order]): graph g's replays joined with those of the graphs
    replayed in turn with it (as many replays, interleaved one each per replay of g); g's alone when the
    others do not interleave that way."""
    count = len(graphs[g])
    first, last = graphs[g][0][0]["start"], max(r["end"] for r in graphs[g][-1])
    group = [h for h, reps in graphs.items()
             if len(reps) == count and reps[0][0]["start"] <= last and max(r["end"] for r in reps[-1]) >= first]
    if len(group) > 1:
        order = sorted(((rep[0]["start"], h, i) for h in group for i, rep in enumerate(graphs[h])))
        turns = [[h for _, h, _ in order[k:k + len(group)]] for k in range(0, len(order), len(group))]
        if all(t == turns[0] for t in turns):
            steps = [sorted((r for h in group for r in graphs[h][k]), key=lambda r: r["start"]) for k in range(count)]
            return turns[0], steps
    return [g], graphs[g]


def attribute(replay):
    """(wall ns, idle ns, {name: share ns}): each elementary interval split among the kernels running."""
    events = []
    for i, r in enumerate(replay):
        events.append((r["start"], 1, i))
        events.append((r["end"], -1, i))
    events.sort(key=lambda e: (e[0], e[1]))
    running, share, idle = set(), defaultdict(float), 0.0
    t0 = last = events[0][0]
    for t, kind, i in events:
        if t > last:
            if running:
                for j in running:
                    share[replay[j]["name"]] += (t - last) / len(running)
            else:
                idle += t - last
        last = t
        if kind > 0:
            running.add(i)
        else:
            running.discard(i)
    return last - t0, idle, share


def busy(replay):
    """{stream: ns with at least one of its kernels running}."""
    out = {}
    for st in sorted({r["stream"] for r in replay}):
        spans = sorted((r["start"], r["end"]) for r in replay if r["stream"] == st)
        total, cur_start, cur_end = 0, spans[0][0], spans[0][1]
        for a, b in spans[1:]:
            if a > cur_end:
                total, cur_start, cur_end = total + cur_end - cur_start, a, b
            else:
                cur_end = max(cur_end, b)
        out[st] = total + cur_end - cur_start
    return out


def between(rows, reps):
    """(steps: [ns from a replay's start to the next's], outside: {name: ns ran}) over consecutive replays
    of reps (in time order): the kernels outside graphs that started between a replay's end and the next's
    start."""
    steps, outside = [], defaultdict(float)
    loose = [r for r in rows if not r["graph"]]
    for a, b in zip(reps, reps[1:]):
        steps.append(b[0]["start"] - a[0]["start"])
        end_a = max(r["end"] for r in a)
        for r in loose:
            if end_a <= r["start"] < b[0]["start"]:
                outside[r["name"]] += r["end"] - r["start"]
    return steps, outside


def host_between(path, t_from, t_to):
    """Rows of the host file (runtime calls, copies, memsets) that overlap [t_from, t_to), in start order."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            start, end = int(r["start_ns"]), int(r["end_ns"])
            if end > t_from and start < t_to:
                out.append((start, end, r["kind"], r["name"], r["bytes"]))
    return sorted(out)


def windows(rows, min_ns):
    """[(length ns, the closing kernel's row)]: from one kernel of at least min_ns's end to the next's."""
    long_ones = [r for r in rows if r["end"] - r["start"] >= min_ns]
    return [(b["end"] - a["end"], b) for a, b in zip(long_ones, long_ones[1:])]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    n_last = int(sys.argv[sys.argv.index("--replays") + 1]) if "--replays" in sys.argv else 8
    rows = load(sys.argv[1])
    if "--windows" in sys.argv:
        min_us = float(sys.argv[sys.argv.index("--windows") + 1])
        print("windows closed by a kernel of %.0f us or more: length (us), the closing kernel (us)" % min_us)
        for length, r in windows(rows, min_us * 1e3)[-n_last:]:
            print("%10.1f  %s %.1f" % (length / 1e3, r["name"], (r["end"] - r["start"]) / 1e3))
        return
    graphs = replays_of(rows)
    if not graphs:
        sys.exit("no kernels from CUDA graphs in %s (was the step captured?)" % sys.argv[1])
    g = max(graphs, key=lambda h: (len(graphs[h]) >= 2, max(len(r) for r in graphs[h])))
    ids, reps = step_replays(graphs, g)
    size = max(len(r) for r in reps)
    reps = [r for r in reps if len(r) == size][-n_last:]
    if len(ids) == 1:
        print("graph %d: %d kernels per replay, %d replays summarized" % (g, size, len(reps)))
    else:
        print("graphs %s replayed in turn: %d kernels per replay of all, %d replays summarized" %
              (", ".join(str(h) for h in ids), size, len(reps)))
    wall = idle = 0.0
    share, alone, calls, stream_busy = defaultdict(float), defaultdict(float), defaultdict(int), defaultdict(float)
    for rep in reps:
        for st, ns in busy(rep).items():
            stream_busy[st] += ns
        w, i, s = attribute(rep)
        wall, idle = wall + w, idle + i
        for k, v in s.items():
            share[k] += v
        for r in rep:
            alone[r["name"]] += r["end"] - r["start"]
            calls[r["name"]] += 1
    n = len(reps)
    print("per replay: wall %.1f us, no kernel running %.1f us (%.1f%%)" % (wall / n / 1e3, idle / n / 1e3,
                                                                         100 * idle / wall))
    for st in sorted(stream_busy):
        print("stream %d: a kernel running %.1f us (%.1f%%)" % (st, stream_busy[st] / n / 1e3,
                                                             100 * stream_busy[st] / wall))
    print("%-32s %6s %12s %12s %7s" % ("kernel", "calls", "ran us", "share us", "share"))
    for k in sorted(share, key=lambda k: -share[k]):
        print("%-32s %6d %12.1f %12.1f %6.1f%%" % (k[:32], calls[k] // n, alone[k] / n / 1e3, share[k] / n / 1e3,
                                                  100 * share[k] / wall))
    steps, outside = between(rows, reps)
    if steps:
        m = len(steps)
        step = sum(steps) / m
        ran = sum(outside.values()) / m
        print("per step: %.1f us from one replay's start to the next; the replay %.1f us, outside it %.1f us, "
              "with kernels outside graphs running %.1f us" % (step / 1e3, wall / n / 1e3, step / 1e3 - wall / n / 1e3,
                                                               ran / 1e3))
        for k in sorted(outside, key=lambda k: -outside[k]):
            print("  outside: %-32s %10.1f us" % (k[:32], outside[k] / m / 1e3))
    if "--host" in sys.argv and len(reps) >= 2:
        a, b = reps[-2], reps[-1]
        t_end = max(r["end"] for r in a)
        print("\nbetween the last two replays: start (us from the first's end), duration (us), what")
        for start, end, kind, name, nbytes in host_between(sys.argv[1] + ".host.csv", t_end, b[0]["start"]):
            extra = " %s bytes" % nbytes if kind != "api" else ""
            print("%10.1f %8.1f  %s %s%s" % ((start - t_end) / 1e3, (end - start) / 1e3, kind, name, extra))
        print("%10.1f           the next replay's first kernel" % ((b[0]["start"] - t_end) / 1e3))
    if "--timeline" in sys.argv:
        rep = reps[-1]
        t0 = rep[0]["start"]
        print("\nlast replay, kernel by kernel: start (us from the first), duration (us), stream")
        for r in rep:
            print("%10.1f %8.1f %4d  %s" % ((r["start"] - t0) / 1e3, (r["end"] - r["start"]) / 1e3, r["stream"],
                                            r["name"]))


if __name__ == "__main__":
    main()
