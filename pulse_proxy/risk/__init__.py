"""Prompt-risk signals: long prompts, jailbreak phrasing, PII and secrets.

Pure functions over text, no I/O, so the accounting step can call them off the request
path and tests can call them directly.  Three rules shape everything here:

* **Nothing matched ever leaves this package.**  :func:`scan` returns only flag names;
  :func:`mask` returns the text with every match replaced by a placeholder.  There is
  no logging, and no validator puts a candidate in an exception message.
* **Bounded work.**  At most ``max_chars`` characters are scanned (the head and tail of
  a longer text, where instructions and pasted material usually sit); every regex is
  compiled once, at import, and written so that failing input cannot make it backtrack
  without bound (the tests feed it pathological 400 KB inputs).
* **Fast on large prompts.**  CPython's ``re`` tries an alternation at every position
  unless it can skip ahead to a known first character, and that costs ~50 ms per 400 KB
  for the jailbreak list alone.  So each detector is one regex that starts with a single
  character class (the characters that can precede a word, token or number), found in C,
  followed by the patterns grouped by their first letters.  A 100k-token prompt scans in
  ~16 ms with the default cap, ~33 ms in full (``bench/risk_quality.py``).

Jailbreak detection is lexical: it finds the listed phrasings in several languages,
whatever their case and spacing, even when quoted inside other text (that is how
indirect injection arrives), but not paraphrases.  On held-out prompts written after
tuning it caught about half.  Treat the flag as a reason to look, not as a verdict.

What lives where (one job a module, so a detector can be read and tuned on its own):

* ``flags.py``: the flag names (:data:`FLAGS`) and the default limits.
* ``scanner.py``: :func:`scan`, which runs the detectors over the head and tail of a text.
* ``masking.py``: :func:`mask`, which replaces every PII and secret match in a text
  (:func:`mask_secrets`: the secret matches only).
* ``extract.py``: :func:`extract_text` / :func:`extract_texts`, the text of a request body.
* ``jailbreak_phrases.py``: :class:`JailbreakPattern` and the multilingual phrase table.
* ``jailbreak.py``: :class:`JailbreakMatcher`, which compiles that table into one regex.
* ``pii.py``: e-mail, phone, card (Luhn), IBAN (mod 97) and SSN detection and validators.
* ``credentials.py`` (the ``secret`` flag): :class:`SecretPattern`, :data:`SECRET_PATTERNS` and their detection.

Everything callers use is re-exported here, so ``from pulse_proxy import risk`` and
``from pulse_proxy.risk import scan`` keep working whatever module a name lives in.
"""

from __future__ import annotations

from pulse_proxy.risk.credentials import SECRET_PATTERNS, SecretPattern
from pulse_proxy.risk.credentials import _secret_spans as _secret_spans
from pulse_proxy.risk.extract import extract_text, extract_texts
from pulse_proxy.risk.flags import DEFAULT_LONG_PROMPT_TOKENS, DEFAULT_MAX_CHARS, FLAGS
from pulse_proxy.risk.jailbreak import _JAILBREAK as _JAILBREAK
from pulse_proxy.risk.jailbreak import JailbreakMatcher
from pulse_proxy.risk.jailbreak_phrases import JAILBREAK_PATTERNS, JailbreakPattern
from pulse_proxy.risk.masking import mask, mask_secrets
from pulse_proxy.risk.pii import _pii_spans as _pii_spans
from pulse_proxy.risk.pii import iban_valid, luhn_valid, ssn_valid
from pulse_proxy.risk.scanner import _sample as _sample
from pulse_proxy.risk.scanner import scan

# The private names above are re-exported for the tests and benchmarks that probe the
# detectors directly (span lists, the scan sample, the compiled jailbreak regex).
__all__ = [
    "DEFAULT_LONG_PROMPT_TOKENS",
    "DEFAULT_MAX_CHARS",
    "FLAGS",
    "JAILBREAK_PATTERNS",
    "SECRET_PATTERNS",
    "JailbreakMatcher",
    "JailbreakPattern",
    "SecretPattern",
    "extract_text",
    "extract_texts",
    "iban_valid",
    "luhn_valid",
    "mask",
    "mask_secrets",
    "scan",
    "ssn_valid",
]
