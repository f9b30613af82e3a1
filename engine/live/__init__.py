"""The engine's live path on one event loop (uvloop in production).

* :mod:`engine.live.streams`: picows client of the combined market streams, feeding
  :class:`engine.feed.market.MarketDataFeed` from the frame callback;
* :mod:`engine.live.wsapi`: picows client of the WebSocket API (``/ws-api/v3``):
  snapshots, orders, user data;
* :mod:`engine.live.runner`: :func:`~engine.live.runner.run` -- connect, quote, shut down
  cleanly, summarise.

Nothing here imports ``engine.sim``.
"""
