"""The appservice HTTP endpoint, on mautrix's `AppService` with stricter intake.

What we change from mautrix's defaults, and why:
- tokens are compared in constant time; a missing token is 401 M_UNKNOWN_TOKEN and a wrong
  one 403 M_FORBIDDEN, and nothing else about the request is looked at first;
- a body that is not a JSON object, or a transaction without an `events` list, is a 400, and
  no input reaches a code path that could answer 500;
- an oversized body is a 413 M_TOO_LARGE (aiohttp's `client_max_size`);
- transactions are recorded durably (`TransactionInbox`) before 200 is answered, so a resend
  after a restart is recognised, and events go to per-room queues in arrival order.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from mautrix.appservice import AppService
from mautrix.appservice.state_store import ASStateStore
from mautrix.client.state_store import MemoryStateStore

from bridge.appservice.errors import matrix_error
from bridge.appservice.inbox import StoredEvent, TransactionInbox

log = logging.getLogger("rapture.appservice")

EventSink = Callable[[StoredEvent], Awaitable[None]]
QueryHandler = Callable[[str], Awaitable[dict[str, Any] | None]]


class MemoryASStateStore(ASStateStore, MemoryStateStore):
    """mautrix's membership/power-level cache, kept in memory (its default writes a JSON file)."""

    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


class RaptureAppService(AppService):
    def __init__(
        self,
        *,
        server: str,
        domain: str,
        as_token: str,
        hs_token: str,
        bot_localpart: str,
        appservice_id: str,
        max_body_size: int,
        inbox: TransactionInbox,
        sink: EventSink,
        query_user: QueryHandler,
        query_alias: QueryHandler,
    ) -> None:
        super().__init__(
            server=server,
            domain=domain,
            as_token=as_token,
            hs_token=hs_token,
            bot_localpart=bot_localpart,
            id=appservice_id,
            log=logging.getLogger("rapture.mautrix"),
            state_store=MemoryASStateStore(),
            aiohttp_params={"client_max_size": max_body_size, "middlewares": [_error_middleware]},
            default_http_retry_count=4,
        )
        self.max_body_size = max_body_size
        self.inbox = inbox
        self.sink = sink
        self._query_user_handler = query_user
        self._query_alias_handler = query_alias
        self._hs_token_bytes = hs_token.encode("utf-8")
        # mautrix registers its own state-store updater; we feed the store from our queues.
        self.event_handlers.clear()

    # -- authentication --------------------------------------------------------------------
    def _check_token(self, request: web.Request) -> bool:
        return self._token_status(request) == "ok"

    def _token_status(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header[len("Bearer "):]
        else:
            token = request.rel_url.query.get("access_token", "")
        if not token:
            return "missing"
        # Constant time: the comparison must not reveal how much of a guess was right.
        if hmac.compare_digest(token.encode("utf-8"), self._hs_token_bytes):
            return "ok"
        return "wrong"

    def _authorize(self, request: web.Request) -> None:
        status = self._token_status(request)
        if status == "missing":
            raise matrix_error(401, "M_UNKNOWN_TOKEN", "Missing homeserver token")
        if status == "wrong":
            raise matrix_error(403, "M_FORBIDDEN", "Invalid homeserver token")

    # -- endpoints -------------------------------------------------------------------------
    async def _read_json_object(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > self.max_body_size:
            raise matrix_error(413, "M_TOO_LARGE", "Request body too large")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise matrix_error(413, "M_TOO_LARGE", "Request body too large") from None
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise matrix_error(400, "M_NOT_JSON", "Body is not valid JSON") from None
        if not isinstance(body, dict):
            raise matrix_error(400, "M_BAD_JSON", "Body must be a JSON object")
        return body

    async def _http_handle_transaction(self, request: web.Request) -> web.Response:
        self._authorize(request)
        txn_id = request.match_info["transaction_id"]
        body = await self._read_json_object(request)
        events = body.get("events")
        if not isinstance(events, list):
            raise matrix_error(400, "M_BAD_JSON", "Transaction needs an 'events' list")
        for event in await self.inbox.record(txn_id, events):
            await self.sink(event)
        return web.json_response({})

    async def _http_query_user(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return await self._answer_query(self._query_user_handler, request.match_info["user_id"])

    async def _http_query_alias(self, request: web.Request) -> web.Response:
        self._authorize(request)
        return await self._answer_query(self._query_alias_handler, request.match_info["alias"])

    async def _answer_query(self, handler: QueryHandler, subject: str) -> web.Response:
        try:
            result = await handler(subject)
        except Exception:
            log.exception("query for %s failed", subject)
            raise matrix_error(500, "M_UNKNOWN", "The bridge could not answer this query") from None
        if result is None:
            raise matrix_error(404, "M_NOT_FOUND", "Not known to the bridge")
        return web.json_response(result)

    async def _http_ping(self, request: web.Request) -> web.Response:
        self._authorize(request)
        await self._read_json_object(request)
        return web.json_response({})


@web.middleware
async def _error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error leaves as Matrix JSON; an unexpected one is logged and is a 500, never a crash."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        errcode = {404: "M_UNRECOGNIZED", 405: "M_UNRECOGNIZED", 413: "M_TOO_LARGE"}.get(
            exc.status, "M_UNKNOWN"
        )
        return web.json_response({"errcode": errcode, "error": exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return web.json_response(
            {"errcode": "M_UNKNOWN", "error": "Internal bridge error"}, status=500
        )
