"""Write the bytecode of every module digestd imports, and of nothing else (`make venv` runs this).

`make venv` installs with `pip install --no-compile`: compiling every module of every dependency
ahead of time added 95 MB to the venv, mostly scipy modules digestd never imports. But a start
without bytecode compiles what it imports from source, about two seconds here, and Python does not
keep the result when the venv is read-only or PYTHONDONTWRITEBYTECODE is set. So this imports each
digestd module and each module digestd's code names in an import statement (those inside functions
too, such as scipy.special or rich), then compiles exactly the modules that are loaded.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import py_compile
import sys
from pathlib import Path

import digestd


def named_imports(package_dir: Path) -> set[str]:
    """Every module name an import statement in the package names, wherever the statement is."""
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def precompile(package_dir: Path, package: str) -> int:
    """Import ``package``'s modules and what they name, compile every module then loaded; how many."""
    wanted = {m.name for m in pkgutil.walk_packages([str(package_dir)], f"{package}.")}
    wanted |= named_imports(package_dir)
    for name in sorted(n for n in wanted if not n.endswith("__main__")):   # __main__ would run the CLI
        try:
            importlib.import_module(name)
        except Exception:   # "from x import function" names no module; optional extras may be absent
            pass
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if source and source.endswith(".py") and Path(source).exists():
            try:
                py_compile.compile(source, doraise=True)
                compiled += 1
            except (py_compile.PyCompileError, OSError) as e:
                print(f"precompile: {source}: {e}", file=sys.stderr)
    return compiled


def main() -> int:
    compiled = precompile(Path(digestd.__file__).parent, "digestd")
    print(f"precompiled {compiled} modules digestd imports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
