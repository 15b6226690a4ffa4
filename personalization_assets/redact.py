"""`redact_url`: the one way a URL is printed or logged, so a password in it never reaches a terminal,
a log file or an error message (bus URLs such as redis://:secret@host:6379/0 carry one)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

_SECRET_PARAMS = ("password", "passwd", "pwd", "secret", "token", "key", "api_key", "apikey", "auth",
                  "access_token", "client_secret", "sig", "signature")


def redact_url(url: str | None) -> str:
    """`url` with its password (and secret-looking query values) replaced by `***`; the user name,
    host, port, path and other parameters stay, so the message still says where."""
    if not url:
        return str(url)
    try:
        parts = urlsplit(str(url))
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if has_password else f"{'***' if user else ''}@{hostport}"
            if not has_password and user:  # redis://secret@host: a lone user part is the password
                netloc = f"***@{hostport}"
        out = str(url)
        if netloc != parts.netloc:  # edit in place: urlunsplit would rewrite sqlite:////abs paths
            out = out.replace(parts.netloc, netloc, 1)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*/:")
            out = out.replace("?" + parts.query, "?" + query, 1)
        return out
    except ValueError:  # not a URL we can take apart: say nothing of it rather than leak it
        return "<unparseable URL>"
