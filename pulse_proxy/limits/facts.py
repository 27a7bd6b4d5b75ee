"""What the rules read from a request, on the request path, cheaply.

The attribution is the events' own (the same salted key hash, the same user and tag
parsing), so ``/pulse/limits`` names consumers as ``llm.request`` does.  The body is
parsed only when a rule needs it (a user, a model, tokens or cost).  Tokens are
charged ahead from an *estimate* of the prompt, a quarter of its characters plus a
few per message, not from tiktoken: counting a large prompt exactly takes
milliseconds of the event loop, and the charge is corrected to the upstream's usage
when the exchange is accounted anyway.
"""

from __future__ import annotations

from pulse_proxy.accounting.finish import key_hash, parse_request, parse_tags
from pulse_proxy.accounting.pricing import PriceTable
from pulse_proxy.limits.rules import RequestFacts
from pulse_proxy.records import Capture
from pulse_proxy.text import escape_control

_MAX_LABEL_CHARS = 128
_TOKENS_PER_MESSAGE = 4


class FactReader:
    def __init__(
        self,
        *,
        hash_key: bytes,
        max_tags: int,
        default_max_tokens: int,
        prices: PriceTable | None,
        reads_body: bool,
        reads_key: bool,
        reads_tags: bool,
    ) -> None:
        self._hash_key = hash_key
        self._max_tags = max_tags
        self._default_max_tokens = default_max_tokens
        self._prices = prices
        self._reads_body = reads_body
        self._reads_key = reads_key
        self._reads_tags = reads_tags

    def read(self, capture: Capture) -> RequestFacts:
        facts = RequestFacts()
        if self._reads_key and capture.api_key:
            facts.api_key_hash = key_hash(capture.api_key, self._hash_key)
        if self._reads_tags and capture.tags_header:
            facts.tags = parse_tags(capture.tags_header, self._max_tags)
        user = capture.user_header
        if self._reads_body:
            request = parse_request(capture.request_body, capture.exchange.endpoint)
            user = user or request.user
            if request.model:
                facts.model = escape_control(request.model[:_MAX_LABEL_CHARS])
            prompt = ((request.prompt_chars or 0) + 3) // 4 + _TOKENS_PER_MESSAGE * (
                request.messages or 0
            )
            completion = (
                request.max_tokens if request.max_tokens is not None else self._default_max_tokens
            )
            if capture.exchange.endpoint == "embeddings":
                completion = 0
            facts.tokens = float(prompt + completion)
            if self._prices is not None:
                cost = self._prices.cost(
                    request.model, prompt_tokens=prompt, completion_tokens=completion
                )
                facts.cost = cost or 0.0
        if user:
            facts.user = escape_control(user[:_MAX_LABEL_CHARS])
        return facts
