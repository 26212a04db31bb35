"""Aster's REST protocol (Binance-compatible): requests, signing, symbol rules, errors, transport.

Pure parts first: :mod:`.requests` builds every request as a plain immutable value,
:mod:`.signing` adds ``timestamp``, ``recvWindow`` and the HMAC-SHA256 signature,
:mod:`.rules` fits quantities and prices to a symbol's filters, :mod:`.errors` maps the
venue's error codes to Tessera outcomes. Only :mod:`.transport` does I/O.
"""
