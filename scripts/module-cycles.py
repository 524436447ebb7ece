"""Finds pairs of modules of one crate that import each other, and exits 1 if there are any.

    python3 scripts/module-cycles.py [crates]

A module depends on another when its code (comments and `#[cfg(test)] mod tests` left out)
names an item of it: `crate::a::b`, `super::x`, `self::y`, `use child::...`, brace lists
included. A path through the crate root (`crate::Name`) counts as a use of the root module
only when `lib.rs` defines `Name` itself; re-exports lead nowhere. So a parent that re-exports
its children's items and children that use a sibling's items are fine; a `lib.rs` that defines
a type its modules use while using theirs is a cycle, as are two siblings that use each other.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from typing import Dict, Set

ITEM = r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:struct|enum|trait|fn|const|static|type|mod)\s+{}\b"


def module_name(src: str, path: str) -> str:
    parts = os.path.relpath(path, src)[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def code_of(path: str) -> str:
    text = open(path, encoding="utf-8").read()
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests\s*\{", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    # crate::{a, b::c} -> crate::a crate::b::c (one level of braces)
    extra = [
        f"{kind}::{item.strip()}"
        for kind, inner in re.findall(r"\b(crate|super|self)::\{([^{}]*)\}", text)
        for item in inner.split(",")
        if item.strip()
    ]
    return text + "\n" + "\n".join(extra)


def dependencies(mods: Dict[str, str]) -> Dict[str, Set[str]]:
    names = set(mods)
    roots = {n.split("::")[0] for n in names}
    deps: Dict[str, Set[str]] = {m: set() for m in mods}
    for m, code in mods.items():
        base = [] if m == "crate" else m.split("::")
        for kind, path in re.findall(r"\b(crate|super|self)::([A-Za-z_]+(?:::[A-Za-z_]+)*)", code):
            parts = path.split("::")
            if kind == "crate" and (len(parts) == 1 or parts[0] not in roots):
                if not re.search(ITEM.format(re.escape(parts[0])), mods.get("crate", ""), re.M):
                    continue  # a re-export at the root: not the root's own code
            cur = [] if kind == "crate" else base[:-1] if kind == "super" else base
            for k in range(len(parts), -1, -1):
                cand = "::".join(cur + parts[:k]) or "crate"
                if cand in names:
                    if cand != m and (m == "crate" or not cand.startswith(m + "::")):
                        deps[m].add(cand)
                    break
        for child in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?use\s+([a-z_]+)::", code, re.M):
            cand = "::".join(base + [child])
            if cand in names and cand != m:
                deps[m].add(cand)
    return deps


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else "crates"
    found = 0
    for crate in sorted(os.listdir(root)):
        src = os.path.join(root, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = {
            module_name(src, os.path.join(d, f)): code_of(os.path.join(d, f))
            for d, _, files in os.walk(src)
            for f in files
            if f.endswith(".rs")
        }
        deps = dependencies(mods)
        for a, b in itertools.combinations(sorted(mods), 2):
            if b in deps[a] and a in deps[b]:
                print(f"{crate}: modules {a} and {b} import each other")
                found += 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
