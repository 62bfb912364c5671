#!/usr/bin/env python3
"""check-includes.py - the include graph has no cycle, and OpenSSL stays
behind its boundary. Run by `make test` (make check-includes).

1. Cycles: the graph of `#include "..."` among the project's headers
   (include/sd/*.h, src/**/*.h). Any cycle fails, printed as a path
   a.h -> b.h -> a.h. (Include guards hide a cycle from the compiler; they
   do not make the order of declarations right.)
2. OpenSSL: no file outside src/tls/, src/pki/, src/audit/, src/auth/ may include
   <openssl/...>, directly or through a project header it includes (so a
   src/tls/ header with OpenSSL types cannot leak into conn.c). tests/,
   fuzz/ and bench/ are exempt: they drive the boundary from outside.

A quoted include resolves against the including file's directory, then
include/, then src/ (the compiler's -Iinclude plus the files that include
src/ headers by relative path). Comments are ignored; conditionals are not
(an include under #if still counts: it is in the graph for some build).
Exit status 0 when clean, 1 with one line per problem on stderr.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPENSSL_OK = ("src/tls/", "src/pki/", "src/audit/", "src/auth/")
EXEMPT = ("tests/", "fuzz/", "bench/")
INC = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]', re.M)


def strip_comments(text):
    # strings are kept whole so a "/*" inside one does not start a comment
    return re.sub(r'"(?:\\.|[^"\\\n])*"|/\*.*?\*/|//[^\n]*',
                  lambda m: m.group(0) if m.group(0).startswith('"') else
                  "\n" * m.group(0).count("\n"), text, flags=re.S)


def rel(p):
    return p.relative_to(ROOT).as_posix()


def sources():
    files = set()
    for pattern in ("include/**/*.h", "src/**/*.h", "src/**/*.c",
                    "tests/**/*.c", "tests/**/*.h", "fuzz/**/*.c", "fuzz/**/*.h",
                    "bench/**/*.c", "bench/**/*.h"):
        files.update(p for p in ROOT.glob(pattern) if p.is_file())
    return sorted(files)


def resolve(src, name):
    for base in (src.parent, ROOT / "include", ROOT / "src"):
        cand = (base / name).resolve()
        if cand.is_file() and ROOT in cand.parents:
            return cand
    return None


def scan(files):
    """file -> (quoted project includes, system includes with line numbers)"""
    graph, system = {}, {}
    for f in files:
        text = strip_comments(f.read_text(errors="replace"))
        quoted, angle = [], []
        for m in INC.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            if m.group(1) == '"':
                target = resolve(f, m.group(2))
                if target is not None:
                    quoted.append(target)
            else:
                angle.append((m.group(2), line))
        graph[f] = quoted
        system[f] = angle
    return graph, system


def cycles(graph):
    """Every elementary cycle found by one DFS over the headers (each cycle
    reported once, from its smallest node)."""
    found, color, stack = set(), {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in graph.get(n, ()):
            if m.suffix != ".h":
                continue
            if color.get(m) == 1:
                cyc = stack[stack.index(m):]
                i = cyc.index(min(cyc))
                found.add(tuple(cyc[i:] + cyc[:i]))
            elif color.get(m) is None:
                visit(m)
        stack.pop()
        color[n] = 2

    for n in sorted(graph):
        if n.suffix == ".h" and color.get(n) is None:
            visit(n)
    return sorted(found)


def openssl_leaks(graph, system):
    """(file, chain of includes ending in the header that includes OpenSSL)"""
    direct = {f: [h for h, _ in system[f] if h.startswith("openssl/")] for f in graph}
    leaks = []
    for f in sorted(graph):
        r = rel(f)
        if r.startswith(OPENSSL_OK) or r.startswith(EXEMPT):
            continue
        # breadth-first, so the chain printed is a shortest one
        seen, queue = {f: None}, [f]
        while queue:
            n = queue.pop(0)
            if direct[n]:
                chain, k = [], n
                while k is not None:
                    chain.append(rel(k))
                    k = seen[k]
                leaks.append((r, list(reversed(chain)), direct[n][0]))
                break
            for m in graph.get(n, ()):
                if m not in seen:
                    seen[m] = n
                    queue.append(m)
    return leaks


def main():
    graph, system = scan(sources())
    problems = []
    for cyc in cycles(graph):
        problems.append("include cycle: " + " -> ".join(rel(n) for n in cyc + (cyc[0],)))
    for f, chain, hdr in openssl_leaks(graph, system):
        via = " (via %s)" % " -> ".join(chain) if len(chain) > 1 else ""
        problems.append("%s includes <%s>%s: only src/tls/, src/pki/ and src/audit/ may "
                        "see OpenSSL" % (f, hdr, via))
    for p in problems:
        print("check-includes: " + p, file=sys.stderr)
    if problems:
        return 1
    nh = sum(1 for f in graph if f.suffix == ".h")
    print("check-includes: %d headers, %d files: no include cycle, OpenSSL only in %s"
          % (nh, len(graph), ", ".join(OPENSSL_OK)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
