"""``mm-engine run`` end to end over loopback WebSockets, as a user runs it."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal


def _run(args, tmp_path, timeout=240):
    out_path = tmp_path / "summary.json"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "run", *args, "--summary-json", str(out_path)],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(out_path.read_text())
    assert json.loads(p.stdout) == doc
    return doc


def _common(doc):
    for key in ("depth_messages", "book_resyncs", "orders_sent", "orders_acked", "orders_rejected", "fills",
                "cancels", "duplicate_client_order_ids", "open_orders_at_exit", "position", "pnl"):
        assert key in doc
    assert set(doc["tick_to_order_us"]) >= {"p50", "p99", "max"}
    assert doc["duplicate_client_order_ids"] == 0 and doc["venue"]["duplicate_client_order_ids"] == 0
    assert doc["open_orders_at_exit"] == 0 and doc["venue"]["open_orders"] == 0
    # The venue received each clientOrderId once: exactly the orders we sent.
    assert doc["venue"]["client_order_ids_received"] == doc["orders_sent"]
    # No filter failure (-1013: tick size, step size, notional) and no bad parameter.
    assert not {"-1013", "-1111", "-1100", "-1102"} & set(doc["venue"]["rejects_by_code"])
    # Position comes only from fills and equals the venue's account change.
    assert Decimal(doc["position"]) == Decimal(doc["venue"]["position"])
    assert doc["strategy_errors"] == 0 and doc["decode_errors"] == 0 and doc["book_invalid_reads"] == 0


def test_run_on_real_recording(need_data, tmp_path):
    f = need_data("hftbacktest/spot/btcusdt_20240808.gz")
    doc = _run(["--data", str(f), "--speed", "30"], tmp_path)
    _common(doc)
    assert doc["end_reason"] == "stop_when"  # the recording ended, so did the run
    assert doc["depth_messages"] > 3000 and doc["book_resyncs"] == 0
    assert doc["orders_sent"] > 0 and doc["fills"] > 0
    assert doc["tick_to_order_us"]["count"] > 0


def test_run_embedded_default(tmp_path):
    doc = _run(["--duration", "6"], tmp_path, timeout=120)
    _common(doc)
    assert doc["end_reason"] == "duration"
    assert doc["orders_sent"] > 0 and doc["depth_messages"] > 0
