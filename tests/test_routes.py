"""The app's routes are unambiguous: the order they are tried in decides nothing.

``api/app.py`` puts the most-called routes first, because trying a route costs time and
routes are tried in order. That is only safe while no request could be answered by two
routes: for every route, a request to its own path (each parameter filled in) must match it
and no other route with the same method.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match, Mount

_PARAM = re.compile(r"{([^}:]+)(?::([^}]+))?}")


def _leaves(routes: list[Any]) -> list[Any]:
    """Every route a request can end at, with its full path (included routers expanded)."""
    found: list[Any] = []
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is not None:
            found += _leaves(candidates())
        else:
            found.append(route)
    return found


def _sample(path: str) -> str:
    """The route's path with each parameter filled in as its convertor accepts."""
    return _PARAM.sub(lambda m: "7" if m.group(2) in ("int", "float") else f"x-{m.group(1)}", path)


def _scope(app: FastAPI, method: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "app": app,
    }


def test_no_request_matches_two_routes(app: FastAPI) -> None:
    leaves = [r for r in _leaves(app.routes) if not isinstance(r, Mount)]
    mounts = [r for r in _leaves(app.routes) if isinstance(r, Mount)]
    paths = [getattr(r, "path", None) for r in leaves]
    assert "/api/v1/profiles/{profile_id}" in paths  # the walk reached included routers
    assert "/v1/batch" in paths
    clashes = []
    for route in leaves:
        path = _sample(route.path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            scope = _scope(app, method, path)
            assert route.matches(scope)[0] == Match.FULL, (route.path, method)
            others = [
                other.path
                for other in leaves + mounts
                if other is not route and other.matches(scope)[0] == Match.FULL
            ]
            if others:
                clashes.append((method, route.path, others))
    assert clashes == []


def test_the_most_called_routes_are_tried_first(app: FastAPI) -> None:
    """The event API, checkout and the 360 sit ahead of the rest (and of the console)."""
    paths = [getattr(r, "path", None) for r in _leaves(app.routes)]
    hot = ["/v1/batch", "/api/v1/carts/{cart_id}/checkout", "/api/v1/profiles/{profile_id}"]
    last_hot = max(paths.index(p) for p in hot)
    assert last_hot < paths.index("/api/v1/channels") < paths.index("/console/")
