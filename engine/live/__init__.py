"""The engine's live path on one event loop (uvloop in production).

* :mod:`engine.live.streams`: picows client of the combined market streams, feeding
  :class:`engine.feed.market.MarketDataFeed` from the frame callback;
* :mod:`engine.live.wsapi`: picows client of the WebSocket API (``/ws-api/v3``):
  snapshots, orders, user data;
* :mod:`engine.live.rest`: the REST route (cancel-all fallback) and USD-M's dead man's
  switch (``countdownCancelAll``), on aiohttp;
* :mod:`engine.live.liveness`: our pings / pongs and per-stream data freshness;
* :mod:`engine.live.supervisor`: fail closed -- halt and cancel everything on a lost or
  stalled connection until the venue confirms, reconnect with back-off, resync, reconcile,
  resume; rotate connections ahead of the venue's 24-hour limit;
* :mod:`engine.live.runner`: :func:`~engine.live.runner.run` -- connect, quote, shut down
  cleanly, summarise.

Nothing here imports ``engine.sim``.
"""
