"""``mm-engine book`` end to end, as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys


def test_book_json(need_data):
    files = [need_data("hftbacktest/spot/ethusdt_20240808.gz"), need_data("hftbacktest/spot/ethusdt_20240809.gz")]
    out = subprocess.run([sys.executable, "-m", "engine.cli", "book", *map(str, files), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    for key in ("depth_messages", "gaps", "resyncs", "crossed", "bbo_checks", "bbo_mismatches", "msgs_per_s"):
        assert key in rep
    assert rep["depth_messages"] == 3434 + 3036
    assert rep["gaps"] == 0 and rep["bbo_mismatches"] == 0 and rep["bbo_checks"] == 1056
    assert rep["msgs_per_s"] > 0


def test_book_text_and_bad_args(need_data, tmp_path):
    f = need_data("hftbacktest/usdm/ethusdt_20240808.gz")
    out = subprocess.run([sys.executable, "-m", "engine.cli", "book", str(f)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "bookTicker" in out.stdout and "551 checked, 0 mismatches" in out.stdout
    out = subprocess.run([sys.executable, "-m", "engine.cli", "book", str(tmp_path / "missing.gz")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no such file" in out.stderr
