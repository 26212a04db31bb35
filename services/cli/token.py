"""``tessera token``: signing keys and bearer tokens for identities (docs/access.md).

``keygen DIR`` writes an Ed25519 key pair; ``mint`` prints a token signed with a private
key for a principal. A deployment with an identity provider does not need either: the
services verify any token signed by a key whose public half they hold.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from services.common import identities

from .client import EXIT_ERROR, EXIT_OK, err


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="token_action", metavar="ACTION")
    actions.required = True
    keygen = actions.add_parser("keygen", help="an Ed25519 key pair: DIR/jwt-signing.pem, DIR/jwt-public.pem")
    keygen.add_argument("directory", type=Path)
    keygen.add_argument("--replace", action="store_true",
                        help="make a new pair over one that is there (tokens the old key signed stop verifying)")
    keygen.set_defaults(handler=cmd_keygen)
    mint = actions.add_parser("mint", help="a bearer token for a principal, on stdout")
    key = mint.add_mutually_exclusive_group(required=True)
    key.add_argument("--key", type=Path, help="the PEM private key (Ed25519, EC P-256 or RSA)")
    key.add_argument("--hmac-key", type=Path, help="the shared key file (HS256; TESSERA_JWT_HMAC_KEY_FILE)")
    mint.add_argument("--subject", required=True, help="the principal, as the entitlements file names it")
    mint.add_argument("--issuer", default=identities.LOCAL_ISSUER, help="iss (default %(default)s)")
    mint.add_argument("--audience", default=identities.LOCAL_AUDIENCE, help="aud (default %(default)s)")
    mint.add_argument("--lifetime", type=float, default=3600.0, metavar="SECONDS",
                      help="seconds until it expires (default %(default)s)")
    mint.add_argument("--key-id", default="", help="kid: the file name of the public key, without .pem")
    mint.set_defaults(handler=cmd_mint)


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        private, public = identities.generate_key_pair(args.directory, replace=args.replace)
    except OSError as error:  # a pair there already, a directory that cannot be made
        err(str(error))
        return EXIT_ERROR
    print(f"private key {private} (keep it with the issuer only)\npublic key {public} (TESSERA_JWT_PUBLIC_KEY_FILES)")
    return EXIT_OK


def cmd_mint(args: argparse.Namespace) -> int:
    try:
        if args.hmac_key is not None:
            token = identities.mint(args.hmac_key.read_bytes(), args.subject, issuer=args.issuer,
                                    audience=args.audience, lifetime=args.lifetime, key_id=args.key_id or None,
                                    algorithm="HS256")
        else:
            token = identities.mint(args.key, args.subject, issuer=args.issuer, audience=args.audience,
                                    lifetime=args.lifetime, key_id=args.key_id or None)
    except (OSError, ValueError, TypeError) as error:
        err(f"cannot mint a token with {args.key or args.hmac_key}: {error}")
        return EXIT_ERROR
    print(token)
    return EXIT_OK


__all__ = ["add_token_arguments"]
