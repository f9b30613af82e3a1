"""The order path: client order ids, request signing, order state and position.

* :mod:`engine.orders.ids`: client order ids (prefix + restart epoch + counter, section 5);
* :mod:`engine.orders.signing`: HMAC-SHA256 / Ed25519 request signatures (section 4);
* :mod:`engine.orders.state`: order states, the forward-only transition rule, error
  classification (UNKNOWN / DUPLICATE / REJECTED), the dedup ring (``ext.dedup`` or fallback);
* :mod:`engine.orders.tracker`: orders in the dedup ring, fills, position and PnL;
* :mod:`engine.orders.reconcile`: the resolver of orders in doubt (``order.status``; adopt,
  resend with the same id after the venue's window, or abandon) and the reconciliation of
  the venue's open orders at start and after every reconnect.

Section numbers refer to ``shared/docs/venue-protocols.md``.
"""
