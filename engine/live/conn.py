"""Connection handling shared by the picows clients (market streams, WS API)."""
from __future__ import annotations

import asyncio
import logging
import time

from picows import WSCloseCode

from engine.bus import ConnectionEvent

log = logging.getLogger(__name__)


class ConnectionMixin:
    """Close, abort and ping for a picows ``WSListener`` holding ``transport``/``connected``/``closing``."""

    transport: object
    connected: bool
    closing: bool
    # Name of the connection in ConnectionEvents ("streams", "ws-api").
    conn_name: str = ""

    async def close(self, timeout: float = 2.0) -> None:
        """Send a close frame and wait for the disconnect (at most ``timeout`` s)."""
        self.closing = True
        tr = self.transport
        if tr is not None and self.connected:
            try:
                tr.send_close(WSCloseCode.OK)
                tr.disconnect()
            except Exception:  # noqa: BLE001 - already gone
                pass
            try:
                await asyncio.wait_for(tr.wait_disconnected(), timeout)
            except asyncio.TimeoutError:
                tr.disconnect(graceful=False)

    def abort(self) -> None:
        """Drop the connection now, without a close handshake (dead or stalled peer)."""
        tr = self.transport
        if tr is not None and self.connected:
            try:
                tr.disconnect(graceful=False)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def send_ping(self, payload: bytes) -> bool:
        """Send a PING frame with ``payload`` (our liveness probe); False if not connected."""
        tr = self.transport
        if tr is None or not self.connected:
            return False
        tr.send_ping(payload)
        return True

    def _event(self, state: str, detail: str) -> None:
        # Report a connection state change; a failing callback is counted, never raised.
        if self.on_connection is not None:
            try:
                self.on_connection(ConnectionEvent(self.conn_name, state, "", detail, time.monotonic_ns()))
            except Exception:
                self.handler_errors += 1
                log.exception("connection callback failed")
