"""Keeping credentials that ride in an API address out of everything batchor stores.

A base URL such as ``http://user:KEY@host/v1`` or ``https://host/v1?api-key=KEY``
carries a secret. :func:`without_credentials` splits it off: the address keeps
its scheme, host, port, path and other query parameters; the secret (the
userinfo password, else its user name, else the first key-like query
parameter) is returned apart, so it can serve as the in-memory API key.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

KEY_QUERY_PARAMETERS = ("api-key", "api_key", "apikey", "key", "access_token", "token")
"""Query parameters that carry an API key, in the order one is taken as the key."""
SECRET_QUERY_PARAMETERS = frozenset(
    {*KEY_QUERY_PARAMETERS, "auth", "auth_token", "password", "secret", "sig", "signature"}
)
"""Query parameters removed from a stored address (compared case-insensitively)."""


def without_credentials(url: str) -> tuple[str, str | None]:
    """``(url without userinfo or secret query parameters, the key it carried)``.

    A URL without credentials comes back unchanged, with ``None``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url, None
    userinfo, at, host = parts.netloc.rpartition("@")
    key: str | None = None
    netloc = parts.netloc
    if at:
        netloc = host
        user, _, password = userinfo.partition(":")
        key = unquote(password or user) or None
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [
            (name, value) for name, value in pairs if name.lower() not in SECRET_QUERY_PARAMETERS
        ]
        if len(kept) != len(pairs):
            by_name = {name.lower(): value for name, value in pairs}
            key = key or next(
                (by_name[name] for name in KEY_QUERY_PARAMETERS if by_name.get(name)), None
            )
            query = urlencode(kept)
    if netloc == parts.netloc and query == parts.query:
        return url, None
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), key
