"""The order path: client order ids, request signing, order state and position.

* :mod:`engine.orders.ids`: client order ids (prefix + restart epoch + counter, section 5);
* :mod:`engine.orders.signing`: HMAC-SHA256 / Ed25519 request signatures (section 4);
* :mod:`engine.orders.tracker`: order state machine, fills, position and PnL.

Section numbers refer to ``shared/docs/venue-protocols.md``.
"""
