"""The provisioning API: integrations link rooms to channels over HTTP.

Routes under `/_rapture/provision/v1/` on the appservice port. Every request carries
`Authorization: Bearer <provisioning.shared_secret>` (compared in constant time) and names the
acting `user_id`; linking and unlinking need that user to be a moderator of the room (power
level 50 or more) or a bridge admin. Linking goes through the one permission check
(`bridge/doors.py`) before the bot even joins the room; a non-admin's link also needs the consent
of one of the channel's operators, so it answers 202 and links (or not) later, telling the
requester in the room (`bridge/link_requests.py`). Errors are JSON `{"errcode", "error"}`: 401 for a bad
secret, 400 for bad input, 403 for too little power, 404 for unknown links, 409 for conflicts.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from mautrix.errors import MatrixError

from bridge.appservice.errors import matrix_error
from bridge.doors import MODERATOR, power_in
from bridge.link_requests import LinkRefused
from bridge.permissions import Level

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.provisioning")
PREFIX = "/_rapture/provision/v1"


def _error(status: int, errcode: str, message: str) -> web.HTTPException:
    if status == 409:
        return web.HTTPConflict(text=json.dumps({"errcode": errcode, "error": message}),
                                content_type="application/json")
    return matrix_error(status, errcode, message)


class ProvisioningAPI:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self._secret = bridge.config.provisioning_secret.encode("utf-8")

    def register(self, app: web.Application) -> None:
        app.router.add_get(f"{PREFIX}/networks", self.networks)
        app.router.add_get(f"{PREFIX}/links", self.links)
        app.router.add_post(f"{PREFIX}/link", self.link)
        app.router.add_post(f"{PREFIX}/unlink", self.unlink)

    # -- request checks ----------------------------------------------------------------------
    def _authorize(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not token or not hmac.compare_digest(token.encode("utf-8"), self._secret):
            raise _error(401, "M_UNKNOWN_TOKEN", "Missing or wrong provisioning secret")

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            raise _error(400, "M_NOT_JSON", "Body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _error(400, "M_BAD_JSON", "Body must be a JSON object")
        return body

    @staticmethod
    def _field(data: Any, name: str, prefix: str = "") -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value or not value.startswith(prefix):
            hint = f" starting with '{prefix}'" if prefix else ""
            raise _error(400, "M_INVALID_PARAM", f"'{name}' must be a non-empty string{hint}")
        return value

    def _user(self, data: Any) -> tuple[str, Level]:
        user_id = self._field(data, "user_id", "@")
        level = self.bridge.config.permissions.level_for(user_id)
        if level < Level.USER:
            raise _error(403, "M_FORBIDDEN", f"{user_id} may not use this bridge (needs level 'user')")
        return user_id, level

    def _channel(self, data: Any) -> tuple[str, str, str]:
        network = self._field(data, "network")
        runtime = self.bridge.networks.get(network)
        if runtime is None:
            raise _error(400, "M_INVALID_PARAM", f"unknown network '{network}'")
        channel = self._field(data, "channel")
        chat_id = runtime.connector.normalize_chat(channel)
        if chat_id is None:
            raise _error(400, "M_INVALID_PARAM", f"'{channel}' is not a valid channel on {network}")
        return network, channel, chat_id

    async def _require_moderator(self, room_id: str, user_id: str, level: Level) -> None:
        if level >= Level.ADMIN:
            return
        try:
            have = await self._power_of(room_id, user_id)
        except MatrixError:
            raise _error(400, "M_UNKNOWN", "the bridge cannot see that room; invite its bot first") from None
        if have < MODERATOR:
            raise _error(403, "M_FORBIDDEN", f"{user_id} has power level {have} in the room; "
                                             f"linking needs {MODERATOR}")

    async def _power_of(self, room_id: str, user_id: str) -> float:
        return power_in(await self.bridge.az.intent.get_state(room_id), user_id)

    # -- endpoints ---------------------------------------------------------------------------
    async def networks(self, request: web.Request) -> web.Response:
        self._authorize(request)
        self._user(request.rel_url.query)
        return web.json_response({"networks": [
            {"name": net.name, "connector": net.connector} for net in self.bridge.config.networks.values()
        ]})

    async def links(self, request: web.Request) -> web.Response:
        self._authorize(request)
        self._user(request.rel_url.query)
        room_id = self._field(request.rel_url.query, "room_id", "!")
        portal = self.bridge.portals.by_room(room_id)
        links = [] if portal is None or portal.chat.receiver else [
            {"room_id": room_id, "network": portal.network, "channel": portal.name or portal.chat.id}
        ]
        return web.json_response({"links": links})

    async def link(self, request: web.Request) -> web.Response:
        """200 when an admin linked; 202 when the channel's operators were asked (see link_requests)."""
        self._authorize(request)
        body = await self._body(request)
        user_id, _level = self._user(body)
        room_id = self._field(body, "room_id", "!")
        network, channel, chat_id = self._channel(body)
        requests = self.bridge.link_requests
        try:
            verdict = requests.check(user_id, room_id, network, chat_id, channel)  # before any side effect
            label = await requests.enter(user_id, room_id, verdict)
            if not verdict.needs_consent:
                await requests.link_now(room_id, network, chat_id, channel)
        except LinkRefused as exc:
            errcode = {403: "M_FORBIDDEN", 429: "M_LIMIT_EXCEEDED"}.get(exc.status, "M_UNKNOWN")
            raise _error(exc.status, errcode, str(exc)) from None
        if verdict.needs_consent:
            async def tell(text: str) -> None:
                await self.bridge.bot.send_notice_as(self.bridge.az.intent, room_id, f"{user_id}: {text}")

            timeout = requests.ask_in_background(user_id, room_id, label, network, chat_id, channel, tell)
            log.info("%s asked to link %s to %s on %s; asking its operators", user_id, room_id, channel, network)
            return web.json_response({"room_id": room_id, "network": network, "channel": channel,
                                      "status": "waiting_for_consent", "timeout": timeout}, status=202)
        log.info("%s linked %s to %s on %s", user_id, room_id, channel, network)
        return web.json_response({"room_id": room_id, "network": network, "channel": channel})

    async def unlink(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await self._body(request)
        user_id, level = self._user(body)
        room_id = self._field(body, "room_id", "!")
        portal = self.bridge.portals.by_room(room_id)
        if portal is None or portal.chat.receiver:
            raise _error(404, "M_NOT_FOUND", f"{room_id} is not linked")
        await self._require_moderator(room_id, user_id, level)
        await self.bridge.unlink(portal)
        log.info("%s unlinked %s", user_id, room_id)
        return web.json_response({})
