#!/usr/bin/env python3
"""tools/cuda/trace_summary.py on a made-up kernel timeline whose answer is known: the decode step's
graph is picked over a smaller one and over kernels outside graphs, replays are split where a graph
node comes back, each instant is split among the kernels running then, the time between replays is
told apart from the replays, the host's calls between the last two are listed, and a step replayed as
several graphs in turn is summarized as one."""
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "cuda", "trace_summary.py")
HEADER = "name,stream,start_ns,end_ns,grid_x,grid_y,grid_z,block_x,graph,graph_node\n"


def row(name, stream, start_us, end_us, graph, node):
    return '"%s",%d,%d,%d,1,1,1,256,%d,%d\n' % (name, stream, start_us * 1000, end_us * 1000, graph, node)


def main():
    lines = [row("_Z12synth_kernelv", 7, 0, 50, 0, 0)]  # not in a graph: ignored
    for rep in range(3):  # the step: graph 5, 4 nodes, 100 us apart
        t = 1000 + 100 * rep
        lines += [row("_Z15gemv_vec_kernelILi1EEvPf", 13, t, t + 10, 5, 11),   # alone 0-10
                  row("_Z12embed_kernelPf", 13, t + 10, t + 14, 5, 12),        # 10-12 alone, 12-14 shared
                  row("_Z11rope_kernelPf", 15, t + 12, t + 20, 5, 13),         # 12-14 shared, 14-20 alone
                  row("void add_kernel(float*)", 13, t + 25, t + 30, 5, 14),   # idle 20-25
                  row("_Z9lm_kernelv", 13, t + 40, t + 70, 0, 0)]              # outside the graph
    for rep in range(4):  # another graph, replayed more often but with fewer kernels
        t = 5000 + 10 * rep
        lines.append(row("_Z10tiny_kernelv", 13, t, t + 1, 9, 21))
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(HEADER + "".join(lines))
    # host side of the same run: the last two replays are 1100-1130 and 1200-1230 (us)
    with open(f.name + ".host.csv", "w") as h:
        h.write("kind,name,start_ns,end_ns,thread_or_stream,bytes\n"
                "api,cudaMemcpy,1150000,1160000,1,0\n"
                "memcpy,kind2,1155000,1158000,13,4\n"
                "api,cudaGraphLaunch,1170000,1190000,1,0\n"
                "api,cudaLaunchKernel,900000,910000,1,0\n")  # before: not listed
    out = subprocess.run([sys.executable, SCRIPT, f.name, "--replays", "2", "--timeline", "--host"],
                         capture_output=True, text=True)
    os.unlink(f.name)
    os.unlink(f.name + ".host.csv")
    text = out.stdout
    print(text, out.stderr)
    want = ["graph 5: 4 kernels per replay, 2 replays summarized",
            "per replay: wall 30.0 us, no kernel running 5.0 us (16.7%)",
            "stream 13: a kernel running 19.0 us (63.3%)",
            "stream 15: a kernel running 8.0 us (26.7%)",
            "gemv_vec_kernel                       1         10.0         10.0   33.3%",
            "rope_kernel                           1          8.0          7.0   23.3%",
            "add_kernel                            1          5.0          5.0   16.7%",
            "embed_kernel                          1          4.0          3.0   10.0%",
            "      12.0      8.0   15  rope_kernel",
            "per step: 100.0 us from one replay's start to the next; the replay 30.0 us, outside it 70.0 us, "
            "with kernels outside graphs running 30.0 us",
            "  outside: lm_kernel                              30.0 us",
            "      20.0     10.0  api cudaMemcpy",
            "      25.0      3.0  memcpy kind2 4 bytes",
            "      40.0     20.0  api cudaGraphLaunch",
            "      70.0           the next replay's first kernel"]
    if "cudaLaunchKernel" in text:
        failed_extra = ["a host call before the replay was listed"]
    else:
        failed_extra = []
    failed = [w for w in want if w not in text] + failed_extra
    # A step replayed in two pieces (graphs 21 then 22, 100 us apart), beside a graph replayed as often
    # but later (not interleaved with them: left out); c_kern's name is nested (an anonymous namespace's
    # kernel): its last part is shown.
    lines = []
    for rep in range(3):
        t = 1000 + 100 * rep
        lines += [row("_Z6a_kernv", 13, t, t + 10, 21, 1), row("_Z6b_kernv", 13, t + 10, t + 20, 21, 2),
                  row("_ZN12_GLOBAL__N_16c_kernEv", 13, t + 25, t + 40, 22, 3)]  # idle 20-25; nested name
        lines.append(row("_Z6d_kernv", 13, 9000 + 10 * rep, 9001 + 10 * rep, 23, 4))
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(HEADER + "".join(lines))
    out = subprocess.run([sys.executable, SCRIPT, f.name, "--replays", "2"], capture_output=True, text=True)
    os.unlink(f.name)
    print(out.stdout, out.stderr)
    failed += [w for w in ["graphs 21, 22 replayed in turn: 3 kernels per replay of all, 2 replays summarized",
                           "per replay: wall 40.0 us, no kernel running 5.0 us (12.5%)",
                           "c_kern                                1         15.0         15.0   37.5%"]
               if w not in out.stdout]
    if "d_kern" in out.stdout:
        failed.append("a graph not replayed in turn with the step was counted in it")
    # --windows: the timeline cut after each long kernel (a verify forward of 600 us closed by a 300-us
    # lm_head, then a draft of 120 us closed by a 100-us one, twice); the short kernels only in between
    lines, t = [], 0
    for rep in range(2):
        lines += [row("_Z4kernv", 13, t + 10, t + 20, 0, 0), row("_Z7lm_headv", 13, t + 300, t + 600, 0, 0),
                  row("_Z4kernv", 13, t + 610, t + 620, 0, 0), row("_Z7lm_headv", 13, t + 620, t + 720, 0, 0)]
        t += 720
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write(HEADER + "".join(lines))
    out = subprocess.run([sys.executable, SCRIPT, f.name, "--windows", "100", "--replays", "3"], capture_output=True,
                         text=True)
    os.unlink(f.name)
    print(out.stdout, out.stderr)
    want = ["     120.0  lm_head 100.0", "     600.0  lm_head 300.0"]
    got = [l for l in out.stdout.splitlines() if "lm_head" in l]
    if got != [want[0], want[1], want[0]]:
        failed.append("--windows: %r, not the draft, verify, draft windows" % got)
    for w in failed:
        print("FAIL: missing %r" % w)
    if out.returncode or failed:
        sys.exit(1)
    print("trace_summary: all checks pass")


if __name__ == "__main__":
    main()
