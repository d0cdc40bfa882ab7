"""Masking secrets in sink strings before they are printed. Pure.

A sink string comes in two shapes, and a typo can mix them:

- URL form, `scheme://user:password@host/db?password=…&token=…`: the user
  info's password and the values of secret-looking query keys;
- libpq's key=value form, `host=db user=app password='s e c'`: the values of
  secret-looking keys, quoted or not, `key = value` with spaces too.

The secrets are found on the raw string, not by a URL parser: a password with
an unencoded `/ # ? @ %` fools the parser, and an invalid string is exactly
the one an error message prints. When in doubt more is masked, never less:
a string without `://` that holds `user:secret@host` loses everything between
its first `:` and its last `@`.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
#: URL form: the string starts with a scheme and `://` (a key=value string
#: may hold `://` in a value).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

#: A key whose name holds one of these (case and `-`/`_` ignored) is a secret:
#: libpq's `password` and `sslpassword`, an HTTP sink's `token`, `api_key`,
#: `access_token`, `auth`, `signature`...
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential",
                 "signature")


#: What a key of the key=value form looks like (libpq's are words); a "key"
#: holding `:` or `/` is a piece of a mistyped URL, whose user info is masked
#: on its own.
_KEY = re.compile(r"[A-Za-z0-9_.%-]+")


def is_secret_key(key: str) -> bool:
    name = unquote(key).strip().lower().replace("-", "").replace("_", "")
    return any(word in name for word in _SECRET_WORDS)


def _userinfo_span(text: str) -> tuple[int, int] | None:
    """The password of `user:password@`: after the user's `:` up to the
    last `@` (a host never holds one). Only a scheme at the start is one: a
    `://` further on may be inside the password."""
    scheme = _URL.match(text)
    start = scheme.end() if scheme else 0
    at = text.rfind("@", start)
    if at < 0:
        return None
    colon = text.find(":", start, at)
    return (colon + 1, at) if colon >= 0 else None


def _query_spans(text: str) -> list[tuple[int, int]]:
    """Values of secret keys in the query. It starts at the first `?`: one
    in the user info's password only makes more of the string a query."""
    spans: list[tuple[int, int]] = []
    query = text.find("?")
    if query < 0:
        return spans
    pos = query + 1
    for item in text[pos:].split("&"):
        key, eq, value = item.partition("=")
        if eq and value and is_secret_key(key):
            spans.append((pos + len(key) + 1, pos + len(item)))
        pos += len(item) + 1
    return spans


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def _value_end(text: str, i: int) -> int:
    """End of the value starting at `i`: libpq's rules (single quotes, a
    backslash escapes the next character), double quotes read the same way;
    an unquoted value ends at whitespace; an unclosed quote runs to the end."""
    quote = text[i] if i < len(text) and text[i] in "'\"" else ""
    i += len(quote)
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if (quote and char == quote) or (not quote and char.isspace()):
            return i + len(quote)
        i += 1
    return len(text)


def _keyvalue_spans(text: str) -> list[tuple[int, int]]:
    """Values of secret keys in `key=value key = 'value'` pairs. A secret key
    without `=` (a typo: `password secret`) masks the word after it."""
    spans: list[tuple[int, int]] = []
    i = _skip_space(text, 0)
    dangling = False  # the previous word was a secret key without its `=`
    while i < len(text):
        if dangling:
            end = _value_end(text, i)
            spans.append((i, end))
            dangling = False
            i = _skip_space(text, end)
            continue
        start = i
        while i < len(text) and not text[i].isspace() and text[i] != "=":
            i += 1
        word = text[start:i]
        secret = bool(_KEY.fullmatch(word)) and is_secret_key(word)
        i = _skip_space(text, i)
        if i < len(text) and text[i] == "=":
            i = _skip_space(text, i + 1)
            end = _value_end(text, i)
            if secret and end > i:
                spans.append((i, end))
            i = _skip_space(text, end)
        else:
            dangling = secret
    return spans


def secret_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every secret in the sink string `text`, sorted and
    merged (no two overlap or touch)."""
    found = [*_query_spans(text)]
    if (userinfo := _userinfo_span(text)) is not None:
        found.append(userinfo)
    if not _URL.match(text):
        found += _keyvalue_spans(text)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in found if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def mask_url(text: str) -> str:
    """The sink string `text` with every secret replaced by `***`:
    `scheme://user:***@host/db?password=***`, `host=db password=***`. Use it
    wherever a sink string is printed (log lines, configuration errors)."""
    for start, end in reversed(secret_spans(text)):
        text = text[:start] + MASK + text[end:]
    return text


def sink_secrets(text: str) -> list[str]:
    """The secret values in the sink string `text`, as written and
    percent-decoded (for log redaction)."""
    found = []
    for start, end in secret_spans(text):
        found += [text[start:end], unquote(text[start:end])]
    return [s for s in found if s]
