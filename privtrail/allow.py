"""A 405 answer's `Allow` header names every method its path takes.

Starlette fills `Allow` from the first route whose path matches, so a path served by two
routes (GET and POST /tokens) would name one method only; clients, and the schema, expect all.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path


def allow_every_method(app: FastAPI) -> None:
    async def method_not_allowed(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        response = await http_exception_handler(request, error)
        methods = methods_of(app, request.url.path)
        if methods:
            response.headers["Allow"] = ", ".join(methods)
        return response

    app.add_exception_handler(405, method_not_allowed)


def methods_of(app: FastAPI, path: str) -> list[str]:
    """The methods of every route of `app` that serves `path`."""
    return sorted(
        {
            method
            for route in iter_route_contexts(app.routes)
            if route.path is not None and compile_path(route.path)[0].match(path)
            for method in route.methods or ()
        }
    )
