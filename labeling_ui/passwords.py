"""Account passwords: salted scrypt hashes, checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """A salted scrypt hash, ``scrypt$n$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return "scrypt${n}${r}${p}${s}${d}".format(**_SCRYPT, s=b64(salt).decode(), d=b64(digest).decode())


#: What an unknown name is checked against: a well-formed hash (random salt and digest, no password
#: has it) with the same cost as a real one, so an unknown name costs exactly one scrypt like a known one.
NO_SUCH_USER_HASH = "scrypt${n}${r}${p}${s}${d}".format(
    **_SCRYPT, s=base64.b64encode(secrets.token_bytes(16)).decode(),
    d=base64.b64encode(secrets.token_bytes(32)).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(base64.b64decode(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))
