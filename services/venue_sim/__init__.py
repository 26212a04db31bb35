"""A local venue that speaks Aster's REST protocol, for tests and rehearsals on one machine.

It checks API keys, HMAC signatures and timestamps exactly as the venue does, keeps an
order book per symbol with synthetic depth around a price, matches orders (market,
limit, stop, stop-limit; GTC, IOC, FOK, post-only), keeps the account's trades, and
injects faults on request (``POST /_sim/faults``): timeouts, 5xx, 429 and 418 answers,
a response dropped after the order was accepted, a fill arriving late.

``python -m services.venue_sim --port N`` (or ``tessera venue-sim``) runs it.
"""
