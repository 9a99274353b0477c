#!/usr/bin/env python3
"""Fails if any exported malloc-family function of a cdylib can reach a Rust panic,
formatting or allocation routine. A panic inside malloc would allocate and format
(re-entering malloc) or unwind across the C ABI, so none may be reachable.

Builds a static call graph from `objdump -d` (direct calls, and jumps, conditional ones
included, into other functions (tail calls); calls through GOT slots resolved with
`readelf -r`), then searches it from each export.
Usage: no_panic_paths.py LIB.so SYMBOL...
"""
import collections
import re
import subprocess
import sys

FORBIDDEN = re.compile(r"panic|core\.\.fmt|core3fmt|begin_unwind|rust_alloc|__rg_alloc|__rdl_alloc")


def graph(lib):
    got = {}
    for line in subprocess.run(["readelf", "-rW", lib], capture_output=True, text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and "R_X86_64_RELATIVE" in line:
            got[int(f[0], 16)] = int(f[3], 16)
        elif len(f) >= 5 and ("GLOB_DAT" in line or "JUMP_SLO" in line):
            got[int(f[0], 16)] = f[4]
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", lib], capture_output=True, text=True, check=True).stdout.splitlines()
    names, calls, cur = {}, collections.defaultdict(set), None
    for line in dis:
        m = re.match(r"^([0-9a-f]+) <(.+)>:", line)
        if m:
            names[int(m.group(1), 16)] = m.group(2)
    for line in dis:
        m = re.match(r"^([0-9a-f]+) <(.+)>:", line)
        if m:
            cur = m.group(2)
            continue
        if cur is None:
            continue
        m = re.search(r"(?:call|j[a-z]+)\s+[0-9a-f]+ <([^>+]+)>", line)
        if m:
            calls[cur].add(m.group(1))
            continue
        m = re.search(r"(?:call|jmp)\s+\*0x[0-9a-f]+\(%rip\)\s+# ([0-9a-f]+)", line)
        if m:
            t = got.get(int(m.group(1), 16))
            if isinstance(t, int):
                t = names.get(t)
            if t:
                calls[cur].add(t.split("@")[0])
    return names, calls


def main():
    lib, symbols = sys.argv[1], sys.argv[2:]
    names, calls = graph(lib)
    # An exported alias shares its address with another name: map each symbol to the
    # label objdump printed for that address.
    dyn = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True, check=True).stdout
    addr_of = {l.split()[2]: int(l.split()[0], 16) for l in dyn.splitlines() if len(l.split()) == 3}
    bad = 0
    for sym in symbols:
        if sym not in addr_of:
            print(f"FAIL {sym}: not exported")
            bad += 1
            continue
        start = names.get(addr_of[sym], sym)
        prev, queue, hit = {start: None}, collections.deque([start]), None
        while queue and hit is None:
            x = queue.popleft()
            if FORBIDDEN.search(x):
                hit = x
                break
            for y in calls.get(x, ()):
                if y not in prev:
                    prev[y] = x
                    queue.append(y)
        if hit is None:
            print(f"ok   {sym}: {len(prev)} functions reachable, none panics or formats")
        else:
            chain = []
            while hit:
                chain.append(hit)
                hit = prev[hit]
            print(f"FAIL {sym} can reach a panic:\n    " + "\n    <- ".join(chain))
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
