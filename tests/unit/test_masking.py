"""`mask_url`: no secret of a sink string survives into what is printed, in
URL form, libpq key=value form, or a typo of either."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consumer.config import Settings, secrets_of
from consumer.masking import mask_url

#: A marker in the middle of every generated secret: it cannot occur in the
#: rest of the string by chance, so "not in the output" means "masked".
MARK = "Zq9xW"


def secrets(alphabet: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    part = st.text(alphabet, max_size=12)
    return st.builds(lambda a, b: f"{a}{MARK}{b}", part, part)


ANY = st.characters(codec="utf-8", exclude_categories=["Cs"])
#: What an unquoted libpq value may hold: no whitespace, quotes or backslash.
UNQUOTED = st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
                         exclude_characters="'\"\\")
#: A URL query value ends at `&`.
QUERY = st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="&")
SECRET_KEYS = st.sampled_from(["password", "sslpassword", "PASSWORD", "token", "api_key",
                               "access_token", "client-secret", "apiKey"])
SCHEMES = st.sampled_from(["postgresql", "postgres", "https", "http", "ftp", "sqlite"])
USERS = st.text(st.characters(codec="ascii", categories=("Ll", "Nd")), min_size=1, max_size=8)


def libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@given(SCHEMES, USERS, secrets(ANY))
def test_url_userinfo_password_never_printed(scheme: str, user: str, secret: str) -> None:
    for url in (f"{scheme}://{user}:{secret}@db:5432/events",
                f"{scheme}://:{secret}@db/events?sslmode=require"):
        out = mask_url(url)
        assert secret not in out
        assert out.endswith(url[url.rindex("@"):])  # where it goes stays readable


@given(SCHEMES, SECRET_KEYS, secrets(QUERY), st.booleans())
def test_url_query_secret_never_printed(scheme: str, key: str, secret: str,
                                        more: bool) -> None:
    url = f"{scheme}://app@db/events?sslmode=require&{key}={secret}"
    url += "&application_name=x" if more else ""
    out = mask_url(url)
    assert secret not in out
    assert out.startswith(f"{scheme}://app@db/events?sslmode=require&{key}=")


@given(SECRET_KEYS, secrets(UNQUOTED), st.sampled_from(["=", " = ", "= ", " ="]),
       st.booleans())
def test_keyvalue_unquoted_secret_never_printed(key: str, secret: str, eq: str,
                                                last: bool) -> None:
    dsn = f"host=db user=app {key}{eq}{secret}" + ("" if last else " dbname=events")
    out = mask_url(dsn)
    assert secret not in out
    assert out.startswith("host=db user=app ")
    assert last or out.endswith(" dbname=events")


@given(SECRET_KEYS, secrets(ANY), st.booleans())
def test_keyvalue_quoted_secret_never_printed(key: str, secret: str, last: bool) -> None:
    dsn = f"host=db {key}={libpq_quote(secret)}" + ("" if last else " dbname=events")
    out = mask_url(dsn)
    assert secret not in out
    assert out.startswith(f"host=db {key}=")


@given(USERS, secrets(UNQUOTED), st.sampled_from(["postgresql:/", "postgresql//",
                                                  "postgresql:", "", "postgres:///"]))
# A `://` inside the password is not the scheme's (found by this test).
@example(user="0", secret="Zq9xW://", prefix="postgresql:/")
def test_typo_without_scheme_separator_never_prints_the_password(
        user: str, secret: str, prefix: str) -> None:
    out = mask_url(f"{prefix}{user}:{secret}@db/events")
    assert secret not in out
    assert out.endswith("@db/events")


@given(secrets(UNQUOTED))
def test_a_secret_key_missing_its_equals_sign_masks_the_next_word(secret: str) -> None:
    assert secret not in mask_url(f"host=db password {secret} dbname=x")


@given(secrets(UNQUOTED))
def test_redaction_lists_the_keyvalue_secret(secret: str) -> None:
    settings = Settings.model_construct(sink_url=f"host=db password={secret}")
    assert secret in secrets_of(settings)


@pytest.mark.parametrize(
    ("text", "masked"),
    [("host=db user=u password=secret", "host=db user=u password=***"),
     ("host=db password='it\\'s a secret' dbname=e", "host=db password=*** dbname=e"),
     ("host = db  password = s3 sslmode=require", "host = db  password = *** sslmode=require"),
     ("dbname=e sslpassword=k", "dbname=e sslpassword=***"),
     ("postgresql:/app:pw@db/e", "postgresql:***@db/e"),
     ("sqlite:///./consumer.db", "sqlite:///./consumer.db"),
     ("kafka://out", "kafka://out"),
     ("host=db user=u", "host=db user=u"),
     ("none", "none")],
)
def test_mask_examples(text: str, masked: str) -> None:
    assert mask_url(text) == masked
