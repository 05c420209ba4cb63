#!/usr/bin/env python3
"""The import graph of src/'s top-level modules: fails on any cycle
(a strongly connected component of more than one module) and on any file
over the size limit. `#[cfg(test)]` code at the end of a file is left out
(tests may reach anywhere).

Usage: modgraph.py SRC_DIR [MAX_LINES]   (default 700)"""
import os
import re
import sys

src = sys.argv[1]
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 700
files_of = {}
for root, _, names in os.walk(src):
    for name in names:
        if name.endswith(".rs"):
            path = os.path.join(root, name)
            top = os.path.relpath(path, src).split(os.sep)[0].removesuffix(".rs")
            if top not in ("main", "lib"):
                files_of.setdefault(top, []).append(path)

reference = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
imports = {m: set() for m in files_of}
sizes = []
for module, paths in files_of.items():
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        sizes.append((text.count("\n"), path))
        cut = text.find("#[cfg(test)]\nmod tests")
        code = text if cut < 0 else text[:cut]
        imports[module] |= {t for t in reference.findall(code) if t in files_of and t != module}

# Cycles: strongly connected components (Tarjan, iterative).
index, low, on_stack, stack, cycles = {}, {}, set(), [], []
counter = 0
for start in sorted(imports):
    if start in index:
        continue
    work = [(start, iter(sorted(imports[start])))]
    index[start] = low[start] = counter
    counter += 1
    stack.append(start)
    on_stack.add(start)
    while work:
        node, successors = work[-1]
        advanced = False
        for nxt in successors:
            if nxt not in index:
                index[nxt] = low[nxt] = counter
                counter += 1
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(imports[nxt]))))
                advanced = True
                break
            if nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if advanced:
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

failed = False
for component in cycles:
    edges = [f"{a}->{b}" for a in component for b in sorted(imports[a]) if b in component]
    print("import cycle:", ", ".join(component), "|", " ".join(edges))
    failed = True
for lines, path in sorted(sizes, reverse=True):
    if lines > limit:
        print(f"over {limit} lines: {path} ({lines})")
        failed = True
print(f"{len(files_of)} modules, {sum(map(len, imports.values()))} imports, {len(cycles)} cycles")
sys.exit(1 if failed else 0)
