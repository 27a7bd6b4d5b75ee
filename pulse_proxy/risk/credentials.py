"""Secret detection: API keys, access tokens, private keys, JWTs and assigned credentials.

Each :class:`SecretPattern` in :data:`SECRET_PATTERNS` is one credential format; they are
combined, grouped by first character, into a single regex, and every match is vetted
(generated-looking, not a documentation placeholder) before it counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import NamedTuple


class SecretPattern(NamedTuple):
    """A credential format.

    ``regex`` must start with a literal character (see the package docstring); ``check``
    vets a match (default: a generated-looking token, see :func:`_mixed`).  A match must
    start the token: it follows whitespace, a quote, '=', ':' or similar.
    """

    name: str
    regex: str
    why: str
    check: Callable[[str], bool] | None = None


# Documentation placeholders are not credentials: sk-xxxx…, AKIA…EXAMPLE, <your key>.
_PLACEHOLDER = re.compile(r"(?i)x{6}|example|your|placeholder|redacted|0{10}|\.\.\.")


def _mixed(token: str, classes: int = 2) -> bool:
    """Generated keys mix upper case, lower case and digits; words and placeholders don't."""
    kinds = (
        any(c.isupper() for c in token) + any(c.islower() for c in token)
        + any(c.isdigit() for c in token)
    )  # fmt: skip
    return kinds >= classes and _PLACEHOLDER.search(token) is None


def _after(prefix_length: int, classes: int = 2) -> Callable[[str], bool]:
    """Check only the random part: a lower-case prefix like ``sk-proj-`` proves nothing."""
    return lambda token: _mixed(token[prefix_length:], classes)


def _last(length: int) -> Callable[[str], bool]:
    return lambda token: _mixed(token[-length:])


def _jwt_valid(token: str) -> bool:
    """Base64 that happens to start ``eyJ`` is common; a JWT header decodes to JSON."""
    header = token.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def _bearer_valid(token: str) -> bool:
    return _mixed(token.split()[-1])


_T = r"[A-Za-z0-9_\-]"  # the base64url alphabet most tokens use
# A Bearer token may hold dots (JWTs) but does not end with one: that is the full stop.
_BEARER = r"[A-Za-z0-9._~+/\-]{19,}[A-Za-z0-9_~+/\-]=*"
_AWS_SECRET_VALUE = r"[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
_ASSIGNED_VALUE = r"[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_\-+/]{24,}=*(?![A-Za-z0-9_\-+/=])"


def _last_word(token: str) -> bool:
    """The value after ``name =`` / ``name:`` must look generated."""
    return _mixed(re.split(r"[\s:=\"']+", token)[-1])


# fmt: off
SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern("anthropic", rf"sk-ant-(?:api|admin|sid)\d\d-{_T}{{20,}}", "Anthropic keys",
                  _after(14, 3)),
    SecretPattern("openai", rf"sk-(?:proj-|svcacct-|admin-|or-v1-)?{_T}{{20,}}",
                  "OpenAI keys (sk-, sk-proj-, sk-svcacct-) and OpenRouter's sk-or-v1-",
                  _after(3, 3)),
    SecretPattern("stripe", r"sk_(?:live|test)_[A-Za-z0-9]{16,}", "Stripe secret keys", _after(8)),
    SecretPattern("stripe_restricted", r"rk_(?:live|test)_[A-Za-z0-9]{16,}",
                  "Stripe restricted keys", _after(8)),
    SecretPattern("aws_access_key_id",
                  r"A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA)[A-Z2-7]{16}(?![A-Za-z0-9])",
                  "AWS access key ids (long-lived AKIA, temporary ASIA, ...)",
                  lambda token: _PLACEHOLDER.search(token) is None),
    SecretPattern("aws_secret", rf"aws[_ .\-]?(?:secret|SECRET|Secret)[\w .\-]{{0,24}}?"
                  rf"{_AWS_SECRET_VALUE}", "AWS secret access key next to its name", _last(40)),
    SecretPattern("aws_secret_upper", rf"A(?:WS|ws)[_ .\-]?(?:secret|SECRET|Secret)"
                  rf"[\w .\-]{{0,24}}?{_AWS_SECRET_VALUE}", "the same, capitalised", _last(40)),
    SecretPattern("aws_secret_key", rf"secret_?(?:access|Access)_?(?:key|Key){_AWS_SECRET_VALUE}",
                  "secret_access_key in INI and env files", _last(40)),
    SecretPattern("aws_secret_key_upper",
                  rf"S(?:ecret|ECRET)_?(?:access|Access|ACCESS)_?(?:key|Key|KEY)"
                  rf"{_AWS_SECRET_VALUE}", "SecretAccessKey in JSON, SECRET_ACCESS_KEY", _last(40)),
    SecretPattern("google", rf"AIza{_T}{{35}}(?![A-Za-z0-9_\-])", "Google API keys", _after(4)),
    SecretPattern("google_oauth", rf"ya29\.{_T}{{30,}}", "Google OAuth access tokens",
                  _after(5)),
    SecretPattern("github", r"gh[pousr]_[A-Za-z0-9]{36,255}",
                  "GitHub tokens (ghp_, gho_, ghu_, ghs_, ghr_)", _after(4)),
    SecretPattern("github_pat", r"github_pat_[A-Za-z0-9_]{50,255}",
                  "GitHub fine-grained personal access tokens", _after(11)),
    SecretPattern("gitlab", rf"glpat-{_T}{{20,}}", "GitLab personal access tokens", _after(6)),
    SecretPattern("groq", r"gsk_[A-Za-z0-9]{40,}", "Groq API keys", _after(4)),
    SecretPattern("slack", r"xox[abposr]-[A-Za-z0-9\-]{10,}", "Slack bot/user/app tokens",
                  lambda token: any(c.isdigit() for c in token) and _after(5)(token)),
    SecretPattern("xai", r"xai-[A-Za-z0-9]{40,}", "xAI API keys", _after(4)),
    SecretPattern("huggingface", r"hf_[A-Za-z0-9]{30,}", "Hugging Face access tokens",
                  _after(3)),
    SecretPattern("npm", r"npm_[A-Za-z0-9]{36}", "npm access tokens", _after(4)),
    SecretPattern("pypi", rf"pypi-AgEIcHlwaS5vcmc{_T}{{50,}}", "PyPI API tokens"),
    SecretPattern("sendgrid", rf"SG\.{_T}{{22}}\.{_T}{{43}}", "SendGrid API keys"),
    # Generic: a long, generated-looking value assigned to a key-like name (Azure's 32-hex
    # api-key, Django's SECRET_KEY, OAuth client secrets…).  Placeholders are rejected.
    SecretPattern("assigned_key", rf"a(?:pi[_\-]?key|ccess[_\-]?token|uth[_\-]?token)"
                  rf"{_ASSIGNED_VALUE}", "api_key = …, access_token: …", _last_word),
    SecretPattern("assigned_key_upper", rf"A(?:PI[_\-]?KEY|pi[_\-]?[Kk]ey|CCESS[_\-]?TOKEN"
                  rf"|UTH[_\-]?TOKEN){_ASSIGNED_VALUE}", "API_KEY=…, Api-Key: …", _last_word),
    SecretPattern("assigned_x_api_key", rf"x-api-key{_ASSIGNED_VALUE}", "x-api-key: …",
                  _last_word),
    SecretPattern("assigned_x_api_key_upper", rf"X-(?:API|Api)-(?:KEY|Key){_ASSIGNED_VALUE}",
                  "X-API-Key: …", _last_word),
    SecretPattern("assigned_client_secret", rf"client[_\-]?secret{_ASSIGNED_VALUE}",
                  "client_secret=…", _last_word),
    SecretPattern("assigned_client_secret_upper", rf"CLIENT[_\-]?SECRET{_ASSIGNED_VALUE}",
                  "CLIENT_SECRET=…", _last_word),
    SecretPattern("assigned_secret_key", rf"secret[_\-]?key{_ASSIGNED_VALUE}", "secret_key=…",
                  _last_word),
    SecretPattern("assigned_secret_key_upper", rf"SECRET[_\-]?KEY{_ASSIGNED_VALUE}",
                  "SECRET_KEY=…", _last_word),
    SecretPattern("private_key", r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----",
                  "PEM, OpenSSH and PGP private-key blocks (public keys and certificates are not"
                  " secrets)", lambda token: True),
    SecretPattern("jwt", rf"eyJ{_T}{{8,}}\.ey{_T}{{8,}}\.{_T}{{16,}}",
                  "JSON Web Tokens: three base64url segments, the header decoding to JSON",
                  _jwt_valid),
    SecretPattern("bearer", rf"Bearer\s+{_BEARER}",
                  "a long token after 'Bearer' (an Authorization header pasted into a prompt)",
                  _bearer_valid),
    SecretPattern("bearer_lower", rf"bearer\s+{_BEARER}", "the same, lower case",
                  _bearer_valid),
    SecretPattern("bearer_upper", rf"BEARER\s+{_BEARER}", "the same, upper case",
                  _bearer_valid),
)
# fmt: on

_KEY_BLOCK_END = re.compile(r"-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_MAX_KEY_BLOCK = 16_384


# Where a credential can start: whitespace, quotes, brackets, '=' and ':' of assignments
# and headers, '/' of URLs.  Same speed trick as for jailbreaks and PII.
_SECRET_STARTS = " \t\n\r\"'`=:;,(\\[{<>*|/\u3000-\u303f\uff00-\uffef"


def _build_secret_regex(patterns: Iterable[SecretPattern]) -> str:
    """Grouped by first character (see :func:`~pulse_proxy.risk.jailbreak._trie`).

    Each pattern is a named group.
    """
    by_first: dict[str, list[str]] = {}
    for pattern in patterns:
        first, rest = pattern.regex[0], pattern.regex[1:]
        by_first.setdefault(first, []).append(f"(?P<{pattern.name}>{rest})")
    firsts = "".join(re.escape(first) for first in by_first)
    branches = "|".join(f"{re.escape(c)}(?:{'|'.join(alts)})" for c, alts in by_first.items())
    return f"[{_SECRET_STARTS}](?=[{firsts}])(?:{branches})"


_SECRET = re.compile(_build_secret_regex(SECRET_PATTERNS))
_SECRET_BY_NAME: Mapping[str, SecretPattern] = {p.name: p for p in SECRET_PATTERNS}


def _secret_spans(text: str) -> Iterator[tuple[str, int, int]]:
    """("[SECRET]", start, end) for each credential, spanning only the secret part."""
    key_end: re.Match[str] | None = None  # the next END line, looked up once per block
    key_end_searched = -1
    for match in _SECRET.finditer(" " + text):
        name = match.lastgroup or ""
        # The group holds all but the first character; -1 more undoes the padding.
        start, end = match.start(name) - 2, match.end(name) - 1
        token = text[start:end]
        if not (_SECRET_BY_NAME[name].check or _mixed)(token):
            continue
        if name == "private_key":
            # A block runs to its END line; without one, mask a generous stretch.  The END
            # search result is reused, so a text of many BEGIN lines stays linear.
            if key_end_searched < 0 or (key_end is not None and key_end.start() < end):
                key_end = _KEY_BLOCK_END.search(text, end)
                key_end_searched = end
            if key_end is not None and key_end.start() - end <= _MAX_KEY_BLOCK:
                end = key_end.end()
            else:
                end = min(len(text), end + _MAX_KEY_BLOCK)
        elif name.startswith(("bearer", "assigned")):
            start = end - len(re.split(r"[\s:=\"']+", token)[-1])
        elif name.startswith("aws_secret"):
            start = end - 40
        yield "[SECRET]", start, end
