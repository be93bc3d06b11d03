"""The route table the gateway's per-route layers share: templates, priority, methods."""

from __future__ import annotations

import pytest

from sysdesign_kit.errors import ConfigurationError
from sysdesign_kit.gateway._route_table import RouteTable, normalize_path, parse_route_key

TABLE = RouteTable(
    [
        ("GET", "/items/{id}", "item"),
        ("GET", "/items/new", "new-item"),
        ("DELETE", "/items/{id:int}", "delete-int"),
        ("POST,PUT", "/items", "write"),
        ("*", "/admin/{rest:path}", "admin"),
        ("GET", "/files/{name}.{ext}", "file"),
        ("GET", "/u/{uid:uuid}", "uuid"),
        ("GET", "/price/{p:float}", "price"),
        ("GET", "/items/{id}/{more:path}", "shadowed-by-nothing"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "value"),
    [
        ("GET", "/items/7", "item"),
        ("HEAD", "/items/7", "item"),
        ("GET", "/items/new", "new-item"),
        ("DELETE", "/items/7", "delete-int"),
        ("DELETE", "/items/seven", None),
        ("POST", "/items", "write"),
        ("PUT", "/items", "write"),
        ("GET", "/items", None),
        ("PATCH", "/admin", "admin"),
        ("BREW", "/admin/a/b/c", "admin"),
        ("GET", "/administrator", None),
        ("GET", "/files/report.pdf", "file"),
        ("GET", "/u/0f8fad5b-d9cb-469f-a165-70867728950e", "uuid"),
        ("GET", "/u/not-a-uuid", None),
        ("GET", "/price/9.99", "price"),
        ("GET", "/items/7/reviews/1", "shadowed-by-nothing"),
        ("GET", "/", None),
    ],
)
def test_matching(method: str, path: str, value: str | None) -> None:
    normal = normalize_path(path)
    assert normal is not None
    assert TABLE.match(method, normal) == value


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/", "/"),
        ("", "/"),
        ("/a/", "/a"),
        ("//a///b//", "/a/b"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/..b", "/a/..b"),
        ("/a/../b", None),
        ("/a/./b", None),
        ("/a/..", None),
        ("/.", None),
    ],
)
def test_normalize_path(path: str, normal: str | None) -> None:
    assert normalize_path(path) == normal


def test_route_keys() -> None:
    assert parse_route_key("GET /x") == ("GET", "/x")
    assert parse_route_key("/x") == ("*", "/x")
    assert parse_route_key(" GET,POST  /x ") == ("GET,POST", "/x")


def test_first_declared_templated_entry_wins() -> None:
    table = RouteTable([("*", "/a/{x}", 1), ("GET", "/a/{y}", 2)])
    assert table.match("GET", "/a/b") == 1
    assert len(table) == 2


@pytest.mark.parametrize(
    "entry",
    [
        ("GET", "x", 1),
        ("GET", "/a/{x:hex}", 1),
        ("GET", "/a/{x", 1),
        ("G T", "/a", 1),
        ("GET", "/a/../b", 1),
    ],
)
def test_bad_entries(entry: tuple[str, str, int]) -> None:
    with pytest.raises(ConfigurationError):
        RouteTable([entry])
