"""Matrix-style JSON error responses for the appservice endpoint."""

from __future__ import annotations

import json

from aiohttp import web


def matrix_error(status: int, errcode: str, message: str) -> web.HTTPException:
    """An aiohttp HTTP exception carrying a Matrix `{"errcode", "error"}` body."""
    cls = web.HTTPException
    for candidate in (
        web.HTTPBadRequest, web.HTTPUnauthorized, web.HTTPForbidden, web.HTTPNotFound,
        web.HTTPRequestEntityTooLarge, web.HTTPTooManyRequests, web.HTTPInternalServerError,
        web.HTTPServiceUnavailable,
    ):
        if candidate.status_code == status:
            cls = candidate
            break
    body = json.dumps({"errcode": errcode, "error": message})
    if cls is web.HTTPRequestEntityTooLarge:
        # aiohttp's 413 insists on the size figures; they are only used for its default text.
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=body, content_type="application/json"
        )
    return cls(text=body, content_type="application/json")
