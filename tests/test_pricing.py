"""Price table: the bundled file, fallbacks, overrides, validation and cost arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pulse_proxy.accounting.pricing import ModelPrice, PriceTable, PriceTableError
from pulse_proxy.records import Exchange

ROOT = Path(__file__).resolve().parent.parent
CONFIG_TABLE = ROOT / "config" / "pricing.yaml"
BUNDLED_TABLE = ROOT / "pulse_proxy" / "data" / "pricing.yaml"

REQUIRED_MODELS = (
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o",
    "gpt-4o-mini", "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-4-turbo", "gpt-4",
    "gpt-3.5-turbo", "text-embedding-3-small", "text-embedding-3-large",
    "text-embedding-ada-002", "claude-sonnet-4", "claude-3-5-haiku", "llama-3.1-8b-instant",
)  # fmt: skip


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------ bundled table


def test_bundled_copy_is_identical_to_config() -> None:
    """The package ships config/pricing.yaml byte for byte (so pip installs get it)."""
    assert BUNDLED_TABLE.read_bytes() == CONFIG_TABLE.read_bytes()


def test_bundled_header() -> None:
    """The table says when it was written, its currency and its unit."""
    data = yaml.safe_load(CONFIG_TABLE.read_text(encoding="utf-8"))
    assert data["as_of"] == "2026-11-29"
    assert data["currency"] == "USD"
    assert data["unit"] == "per_million_tokens"
    assert PriceTable.load().as_of == "2026-11-29"


def test_bundled_table_covers_todays_models(table: PriceTable) -> None:
    """Every model the issue names is priced, and embeddings have no output price."""
    for model in REQUIRED_MODELS:
        assert table.price_for(model) is not None, model
    assert table.price_for("text-embedding-3-small") == ModelPrice(input=0.02)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o", ModelPrice(input=2.50, cached_input=1.25, output=10.00)),
        ("gpt-4o-mini", ModelPrice(input=0.15, cached_input=0.075, output=0.60)),
        ("gpt-4.1", ModelPrice(input=2.00, cached_input=0.50, output=8.00)),
        ("gpt-5", ModelPrice(input=1.25, cached_input=0.125, output=10.00)),
        ("gpt-5-mini", ModelPrice(input=0.25, cached_input=0.025, output=2.00)),
    ],
)
def test_known_list_prices(table: PriceTable, model: str, price: ModelPrice) -> None:
    """Reference prices from the issue are in the table as written."""
    assert table.price_for(model) == price


# -------------------------------------------------------------------------- fallbacks


@pytest.mark.parametrize(
    ("model", "base"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o3-2025-04-16", "o3"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("openai/gpt-4o", "gpt-4o"),
        ("openrouter/openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
    ],
)
def test_fallbacks(table: PriceTable, model: str, base: str) -> None:
    """Provider prefixes, date suffixes, -latest and case fall back to the base model."""
    assert table.price_for(model) == table.price_for(base)


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o-mini-search-preview",
        "gpt-4o-audio-preview-2024-12-17",
        "gpt-4-32k-0613",
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",
        "my-azure-deployment",
        "",
        None,
    ],
)
def test_no_fuzzy_matching(table: PriceTable, model: str | None) -> None:
    """Variants with a different price are unpriced, never priced as their family."""
    assert table.price_for(model) is None
    assert table.cost(model, prompt_tokens=10, completion_tokens=10) is None


def test_mini_never_falls_back_to_its_bigger_sibling(tmp_path: Path) -> None:
    """Without a gpt-4o-mini entry, a dated gpt-4o-mini id is unpriced, not gpt-4o."""
    path = write(tmp_path, "drop.yaml", "models:\n  gpt-4o-mini: null\n")
    table = PriceTable.load([path])
    assert table.price_for("gpt-4o-mini-2024-07-18") is None
    assert table.price_for("gpt-4o-2024-08-06") is not None


# -------------------------------------------------------------------------- arithmetic


def test_plain_cost(table: PriceTable) -> None:
    """Prompt and completion tokens cost their per-million prices."""
    cost = table.cost("gpt-4o", prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert cost == 12.5
    assert table.cost("gpt-4o", prompt_tokens=1000, completion_tokens=500) == 0.0075


def test_cached_tokens_are_part_of_the_prompt(table: PriceTable) -> None:
    """Cached tokens are charged at cached_input and the rest of the prompt at input."""
    cost = table.cost("gpt-4o", prompt_tokens=2000, completion_tokens=100, cached_tokens=1536)
    # (2000 - 1536) * 2.50 + 1536 * 1.25 + 100 * 10.00, per million
    assert cost == pytest.approx((464 * 2.50 + 1536 * 1.25 + 100 * 10.00) / 1e6, abs=1e-12)
    assert cost == 0.00408


def test_cached_without_a_cached_price_is_charged_as_input(table: PriceTable) -> None:
    """A model with no cached_input gives no cache discount."""
    full = table.cost("gpt-4-turbo", prompt_tokens=1000, completion_tokens=0)
    cached = table.cost("gpt-4-turbo", prompt_tokens=1000, completion_tokens=0, cached_tokens=900)
    assert full == cached == 0.01


def test_reasoning_tokens_are_not_added_again(table: PriceTable) -> None:
    """Reasoning tokens are inside completion_tokens and are billed once at output price."""
    with_reasoning = table.cost(
        "o3", prompt_tokens=100, completion_tokens=1000, reasoning_tokens=800
    )
    without = table.cost("o3", prompt_tokens=100, completion_tokens=1000)
    assert with_reasoning == without == pytest.approx((100 * 2.00 + 1000 * 8.00) / 1e6)


def test_reasoning_larger_than_completion_is_billed(table: PriceTable) -> None:
    """A provider that leaves reasoning out of completion_tokens is billed the larger count."""
    cost = table.cost("o4-mini", prompt_tokens=0, completion_tokens=10, reasoning_tokens=500)
    assert cost == pytest.approx(500 * 4.40 / 1e6)


def test_odd_counts_are_clamped(table: PriceTable) -> None:
    """More cached than prompt tokens, negatives and None never make a cost negative."""
    price = table.price_for("gpt-4o")
    assert price is not None
    over = price.cost(prompt_tokens=100, completion_tokens=0, cached_tokens=500)
    assert over == price.cost(prompt_tokens=100, completion_tokens=0, cached_tokens=100)
    assert price.cost(prompt_tokens=-5, completion_tokens=None, cached_tokens=None) == 0.0


def test_embeddings_cost_input_only(table: PriceTable) -> None:
    """Embedding models are priced on input tokens alone."""
    assert (
        table.cost("text-embedding-3-small", prompt_tokens=1_000_000, completion_tokens=None)
        == 0.02
    )


def test_costs_are_rounded_to_ten_places(table: PriceTable) -> None:
    """Float noise is rounded away (0.1 + 0.2 style sums come out exact)."""
    cost = table.cost("gpt-4o-mini", prompt_tokens=3, completion_tokens=7)
    assert cost == 0.0000046500
    assert len(repr(cost).split("e")[0].replace(".", "").lstrip("0")) <= 10


def test_exchange_cost_prefers_the_response_model(table: PriceTable) -> None:
    """An exchange is priced by the model that ran, else the model asked for."""
    ex = Exchange(
        request_id="r",
        method="POST",
        path="/v1/chat/completions",
        model="my-deployment",
        response_model="gpt-4o-2024-08-06",
        prompt_tokens=1000,
        completion_tokens=100,
        cached_tokens=0,
        reasoning_tokens=None,
    )
    assert table.exchange_cost(ex) == table.cost(
        "gpt-4o", prompt_tokens=1000, completion_tokens=100
    )
    ex.response_model = None
    assert table.exchange_cost(ex) is None
    ex.model = "gpt-4o-mini"
    assert table.exchange_cost(ex) == table.cost(
        "gpt-4o-mini", prompt_tokens=1000, completion_tokens=100
    )
    ex.prompt_tokens = None
    assert table.exchange_cost(ex) is None


# --------------------------------------------------------------------------- overrides


def test_user_files_override_in_order(tmp_path: Path) -> None:
    """Later files win, an entry is replaced whole, new models are added, null removes."""
    first = write(
        tmp_path,
        "a.yaml",
        (
            "models:\n"
            "  gpt-4o: {input: 2.00, cached_input: 1.00, output: 8.00}\n"
            "  my-model: {input: 1.0, output: 2.0}\n"
            "  o1: null\n"
        ),
    )
    second = write(
        tmp_path,
        "b.yaml",
        ('as_of: "2027-01-01"\nmodels:\n  gpt-4o: {input: 1.50, output: 6.00}\n'),
    )
    table = PriceTable.load([first, second])
    assert table.price_for("gpt-4o") == ModelPrice(input=1.50, output=6.00)
    assert table.price_for("gpt-4o-2024-08-06") == ModelPrice(input=1.50, output=6.00)
    assert table.price_for("My-Model") == ModelPrice(input=1.0, output=2.0)
    assert table.price_for("o1") is None
    assert table.price_for("gpt-4o-mini") is not None
    assert table.as_of == "2027-01-01"
    assert PriceTable.load([second, first]).price_for("gpt-4o") == ModelPrice(
        input=2.00, cached_input=1.00, output=8.00
    )


def test_empty_override_file_changes_nothing(tmp_path: Path) -> None:
    """An empty file (or one without models) leaves the bundled table as it is."""
    empty = write(tmp_path, "empty.yaml", "")
    table = PriceTable.load([empty])
    assert table.price_for("gpt-4o") == PriceTable.load().price_for("gpt-4o")
    assert len(table) == len(PriceTable.load())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "models:\n  gpt-4o: {input: abc, output: 1}\n",
            r"models\.gpt-4o\.input: must be a number",
        ),
        ("models:\n  gpt-4o: {input: -1}\n", r"models\.gpt-4o\.input: must be zero or more"),
        ("models:\n  gpt-4o: {input: 1, outptu: 2}\n", r"models\.gpt-4o\.outptu: unknown key"),
        ("models:\n  gpt-4o: {output: 2}\n", r"models\.gpt-4o\.input: required"),
        ("models:\n  gpt-4o: {input: true}\n", r"models\.gpt-4o\.input: must be a number"),
        ("models:\n  gpt-4o: 2.5\n", r"models\.gpt-4o: expected a mapping"),
        ("models: [gpt-4o]\n", r"models: expected a mapping"),
        ("modles:\n  gpt-4o: {input: 1}\n", r"unknown key 'modles'"),
        ("currency: EUR\nmodels: {}\n", r"currency: only USD"),
        ("unit: per_thousand_tokens\n", r"unit: only per_million_tokens"),
        ("models: {gpt-4o: {input: 1}\n", r"not valid YAML"),
        ("- just a list\n", r"expected a mapping"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    """A bad price file fails loading with a message naming the file, model and key."""
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(PriceTableError, match=message) as excinfo:
        PriceTable.load([path])
    assert str(path) in str(excinfo.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A price file that does not exist is reported by path."""
    with pytest.raises(PriceTableError, match="cannot read price file"):
        PriceTable.load([tmp_path / "nope.yaml"])


def test_unquoted_date_is_accepted(tmp_path: Path) -> None:
    """as_of written as a bare YAML date is read as the same ISO string."""
    path = write(tmp_path, "dated.yaml", "as_of: 2027-02-03\nmodels: {}\n")
    assert PriceTable.load([path]).as_of == "2027-02-03"
