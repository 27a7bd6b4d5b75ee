"""UpstreamBase keeps the URLs of the paths clients use, within a bound."""

from __future__ import annotations

from pulse_proxy.proxy.urls import _MAX_CACHED_PATHS, UpstreamBase


def test_kept_urls_are_the_built_ones_and_the_table_stops_growing() -> None:
    base = UpstreamBase("http://user:pw@127.0.0.1:8081/v1/")
    first = base.url_for("/chat/completions")
    assert base.url_for("/chat/completions") is first  # kept, not rebuilt
    assert str(first) == "http://user:pw@127.0.0.1:8081/v1/chat/completions"

    for i in range(_MAX_CACHED_PATHS * 2):
        url = base.url_for(f"/files/file-{i}")
        assert (
            url.raw_path == f"/v1/files/file-{i}" and url.raw_authority == "user:pw@127.0.0.1:8081"
        )
    assert len(base._plain) == _MAX_CACHED_PATHS

    with_query = base.url_for("/models", "after=x%26y")
    assert with_query.raw_query_string == "after=x%26y"
    assert base.url_for("/models", "after=z").raw_query_string == "after=z"
    assert "/models" not in base._plain  # URLs with a query are built each time
