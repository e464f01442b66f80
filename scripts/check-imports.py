#!/usr/bin/env python3
"""Every module a source file imports must be a *direct* dependency of its target in
Package.swift (or the toolchain's own). SwiftPM's --explicit-target-dependency-import-check
accepts any module in a target's dependency closure, so `import Libvirt` in Clusters (which
reaches Libvirt through Machines) would pass it; this check does not. Run by `make build`.
Exit 1 naming each file and import that breaks the rule."""
import json, os, re, subprocess, sys, tempfile

TOOLCHAIN = {"Foundation", "FoundationEssentials", "FoundationXML", "FoundationNetworking", "Glibc", "Dispatch", "Synchronization", "Testing",
             "XCTest", "_Concurrency", "Swift", "os", "Darwin"}
# Products whose module name differs from the product's.
PRODUCT_MODULES = {"Crypto": {"Crypto"}, "ArgumentParser": {"ArgumentParser"}, "Yams": {"Yams"}}

def main(root):
    # A scratch path of its own: the package's .build may be locked by the `swift build` or
    # `swift test` that runs this (the unit test does), and dump-package would wait for it.
    with tempfile.TemporaryDirectory(prefix="vmctl-imports.") as scratch:
        pkg = json.loads(subprocess.run(["swift", "package", "--scratch-path", scratch, "dump-package"], cwd=root,
                                        check=True, capture_output=True, text=True, timeout=300).stdout)
    bad = []
    for t in pkg["targets"]:
        if t["type"] not in ("regular", "executable", "test"):
            continue
        allowed = set(TOOLCHAIN) | {t["name"]}
        for dep in t["dependencies"]:
            for kind in ("byName", "target"):
                if kind in dep:
                    allowed.add(dep[kind][0])
            if "product" in dep:
                allowed |= PRODUCT_MODULES.get(dep["product"][0], {dep["product"][0]})
        base = t.get("path") or os.path.join("Tests" if t["type"] == "test" else "Sources", t["name"])
        for dirpath, _, files in os.walk(os.path.join(root, base)):
            for f in sorted(files):
                if not f.endswith(".swift"):
                    continue
                path = os.path.join(dirpath, f)
                in_literal = False  # inside a multi-line string literal (an embedded script's own imports)
                for n, line in enumerate(open(path, encoding="utf-8"), 1):
                    if line.count('"""') % 2 == 1:
                        in_literal = not in_literal
                        continue
                    if in_literal:
                        continue
                    m = re.match(r"\s*(?:@\w+\s+)*(?:(?:public|package|internal|fileprivate|private)\s+)?import\s+"
                                 r"(?:(?:struct|class|enum|protocol|func|var|let|typealias)\s+)?([A-Za-z_]\w*)", line)
                    if m and m.group(1) not in allowed:
                        bad.append(f"{os.path.relpath(path, root)}:{n}: target {t['name']} imports {m.group(1)}, "
                                   f"which it does not declare as a dependency in Package.swift")
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        print("check-imports: a target may import only its direct dependencies (the layers in Package.swift)",
              file=sys.stderr)
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")))
