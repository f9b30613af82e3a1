"""Imports run one way (the design card):

* ``ext/`` imports nothing of ours;
* the simulator (``engine/sim``) never imports the engine's live path or
  strategies, and they never import it;
* strategies see only the bus;
* nothing imports the CLI.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+(?:c?import)|c?import\s+([\w.]+))", re.M)
OURS = ("engine", "ext", "strategies")


def _imports(path: Path) -> set[str]:
    text = path.read_text()
    out = set()
    for a, b in _IMPORT.findall(text):
        mod = a or b
        if mod.split(".")[0] in OURS:
            out.add(mod)
    return out


def _files(sub: str):
    base = ROOT / sub
    return [p for p in base.rglob("*") if p.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in p.parts]


def test_sources_found():
    assert len(_files("engine")) > 10 and len(_files("ext")) >= 4


def test_ext_imports_nothing_of_ours():
    for f in _files("ext"):
        bad = {m for m in _imports(f) if not m.startswith("ext")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_sim_is_isolated():
    live = ("engine.feed", "engine.live", "engine.orders", "engine.bus", "engine.replay", "strategies", "engine.cli")
    for f in _files("engine/sim"):
        bad = {m for m in _imports(f) if m.startswith(live)}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
    for f in _files("engine") + _files("strategies"):
        if "sim" in f.relative_to(ROOT).parts or f.name == "cli.py":
            continue
        bad = {m for m in _imports(f) if m.startswith("engine.sim")}
        assert not bad, f"{f.relative_to(ROOT)} imports the simulator: {bad}"


def test_strategies_see_only_the_bus():
    for f in _files("strategies"):
        bad = {m for m in _imports(f) if not m.startswith(("engine.bus", "strategies"))}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_nothing_imports_the_cli():
    for f in _files("engine") + _files("ext") + _files("strategies"):
        if f.name == "cli.py":
            continue
        assert "engine.cli" not in _imports(f), f"{f.relative_to(ROOT)} imports the CLI"
