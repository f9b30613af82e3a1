"""The book equals the venue's book on every real Binance recording with a snapshot.

Expected counts come from shared/data/README.md, section 1 (an independent
replay of the same files): diffs applied and bookTicker matches per session.
"""
from __future__ import annotations

import pytest

from engine.replay import replay_book

SESSIONS = [
    # (files, market, diffs applied, bookTicker checks) per shared/data/README.md 1a/1b
    (["hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz"], "spot", 6493, 1072),
    (["hftbacktest/spot/ethusdt_20240808.gz", "hftbacktest/spot/ethusdt_20240809.gz"], "spot", 6468, 1056),
    (["hftbacktest/usdm/btcusdt_20240808.gz"], "usdm", 6547, 629),
    (["hftbacktest/usdm/ethusdt_20240808.gz"], "usdm", 6581, 551),
    (["hftbacktest/usdm/btcusdt_20230404.dat.gz", "hftbacktest/usdm/btcusdt_20230405.dat.gz"], "usdm", 16110, 1565),
]


@pytest.mark.parametrize("files,market,applied,checks", SESSIONS, ids=lambda v: v[0].split("/")[-1] if isinstance(v, list) else None)
def test_book_matches_every_book_ticker(need_data, files, market, applied, checks):
    paths = [need_data(f) for f in files]
    rep = replay_book(paths)
    assert rep.symbols and all(s["market"] == market for s in rep.symbols.values())
    assert rep.decode_errors == {}
    assert rep.gaps == 0 and rep.resyncs == 0 and rep.crossed == 0
    assert rep.bbo_mismatches == 0, rep.mismatch_samples
    assert rep.bbo_checks > 500
    assert rep.bbo_checks == checks
    assert rep.diffs_applied == applied
    assert rep.valid_at_end
    assert rep.best_bid is not None and rep.best_ask is not None


def test_session_without_snapshot_waits(need_data):
    """The 2023 spot file has no snapshot: the book never becomes valid and nothing is checked."""
    rep = replay_book([need_data("hftbacktest/spot/btcusdt_20230405.dat.gz")])
    assert rep.depth_messages == 3929
    assert rep.diffs_applied == 0 and rep.bbo_checks == 0 and not rep.valid_at_end
    assert rep.decode_errors == {}
