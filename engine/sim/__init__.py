"""Loopback Binance simulator: recorded or synthetic market data on Binance's wire protocol.

Market-data side (this package's ``market``, ``playback``, ``synthetic``, ``streams``,
``server``) and trading side (``exchange``, ``matching``, ``auth``, ``wsapi``, ``rest``)
meet at :class:`engine.sim.market_view.MarketView`. Nothing here imports the engine's
live path (``engine.feed``, ``engine.live``, ``engine.orders``, ``strategies``).

Start it from code::

    from engine.sim import start_simulator, describe
    handle = await start_simulator()                    # synthetic BTCUSDT at real time
    handle = await start_simulator(["btcusdt_20240808.gz", "btcusdt_20240809.gz"])
    print("\\n".join(describe(handle)))
    await handle.ended
    await handle.close()
"""
from __future__ import annotations

from typing import Any

# Exported names and their modules, imported on first use so that importing a
# trading-side module (engine.sim.market_view, ...) does not pull in the servers.
_EXPORTS = {
    "VenueMarket": "market",
    "MarketEvent": "market",
    "BookUnavailable": "market",
    "BookIntegrityError": "market",
    "run_source": "market",
    "PlaybackSource": "playback",
    "session_paths": "playback",
    "SyntheticConfig": "synthetic",
    "SyntheticSource": "synthetic",
    "StreamHub": "streams",
    "StreamLimits": "streams",
    "SPOT_LIMITS": "streams",
    "USDM_LIMITS": "streams",
    "FaultPlan": "faults",
    "WsApiFaults": "faults",
    "SimulatorHandle": "server",
    "start_simulator": "server",
    "describe": "server",
    "make_source": "server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'engine.sim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"engine.sim.{mod}"), name)
    globals()[name] = value
    return value
