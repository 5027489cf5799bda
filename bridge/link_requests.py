"""Linking a Matrix room to a channel, for the bot's `link` and provisioning `POST link` alike.

Order matters, because every step after the first has a side effect:
1. `check`: the permission check (`Doors`, `Door.LINK`) and "is either side bridged already",
   with no side effect at all;
2. `enter`: the bot joins the room (it cannot read the room's power levels otherwise); an
   encrypted room is refused (for admins too), and a non-admin must be a moderator there
   (power 50); when refused, the bot leaves a room it was not in before;
3. an admin links at once; anyone else's request goes to the channel's operators
   (`ConsentAsker.ask_operators`) in the background, and the first operator's yes within
   `link_consent_timeout` links; a no, or no answer, refuses. The requester is told either way.

Asking costs the network: each request is a NAMES and two private messages to each of up to
ten operators, from the bridge's own connection. Unlimited, anyone who can make Matrix rooms
could have the bridge spam every channel's operators, which is what gets a bridge K-lined.
So, per network, at most `ASKS_PER_HOUR` requests are asked in any hour and
`ASKS_PER_USER_PER_HOUR` of them for one requester, and a channel whose operators were asked
and did not agree is not asked again for `REASK_SECONDS`. Bridge admins link without asking,
so none of this applies to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mautrix.errors import MatrixError

from connectors.api import ChatRef, ConsentAsker, ConsentResult

from bridge.dm_caps import NewDMCaps
from bridge.doors import MODERATOR, Door, Verdict, power_in
from bridge.encrypted_rooms import CANNOT_READ

if TYPE_CHECKING:
    from bridge.runtime import Bridge

log = logging.getLogger("rapture.link")
Tell = Callable[[str], Awaitable[None]]
ASKS_PER_HOUR = 30  # per network
ASKS_PER_USER_PER_HOUR = 3
REASK_SECONDS = 600.0  # after a no (or no answer), the same channel's operators rest this long
MAX_RESTING = 1024  # channels remembered as resting (the oldest are forgotten first)


class LinkRefused(Exception):
    """A link that may not happen; `status` is the HTTP status the provisioning API answers."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class LinkRequests:
    def __init__(self, bridge: Bridge, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.bridge = bridge
        self._clock = clock
        self._asking: set[tuple[str, str]] = set()  # (network, chat id) and ("", room id) in consent
        self._asks: dict[str, NewDMCaps] = {}  # network -> requests asked in the last hour
        self._resting: dict[tuple[str, str], float] = {}  # (network, chat id) -> refused when

    def _caps(self, network: str) -> NewDMCaps:
        caps = self._asks.get(network)
        if caps is None:
            caps = self._asks[network] = NewDMCaps(ASKS_PER_HOUR, ASKS_PER_USER_PER_HOUR, clock=self._clock)
        return caps

    def _rests(self, network: str, chat_id: str) -> bool:
        since = self._resting.get((network, chat_id))
        if since is None:
            return False
        if self._clock() - since >= REASK_SECONDS:
            del self._resting[(network, chat_id)]
            return False
        return True

    def _rest(self, network: str, chat_id: str) -> None:
        self._resting.pop((network, chat_id), None)
        self._resting[(network, chat_id)] = self._clock()
        while len(self._resting) > MAX_RESTING:
            del self._resting[next(iter(self._resting))]

    def check(self, requester: str, room_id: str, network: str, chat_id: str, name: str) -> Verdict:
        """Step 1: may `requester` link these two? Raises LinkRefused; no side effect."""
        verdict = self.bridge.doors.check(requester, Door.LINK, network)
        if not verdict.allowed:
            raise LinkRefused(verdict.reason, 403)
        portals = self.bridge.portals
        if portals.by_room(room_id) is not None:
            raise LinkRefused(f"{room_id} is already bridged", 409)
        if portals.by_chat(network, ChatRef(chat_id)) is not None:
            raise LinkRefused(f"{name} on {network} is already bridged", 409)
        if (network, chat_id) in self._asking or ("", room_id) in self._asking:
            raise LinkRefused(f"a request to link {name} on {network} or {room_id} is already waiting for "
                              "an operator's answer", 409)
        if verdict.needs_consent:
            if self._rests(network, chat_id):
                raise LinkRefused(f"the operators of {name} on {network} were asked lately and did not agree; "
                                  f"they are not asked again within {REASK_SECONDS / 60:g} minutes", 429)
            if not self._caps(network).would_admit(requester):
                raise LinkRefused(f"the bridge asks channel operators on {network} at most {ASKS_PER_HOUR} times "
                                  f"an hour, and at most {ASKS_PER_USER_PER_HOUR} times for one user; "
                                  "try again later", 429)
        return verdict

    async def enter(self, requester: str, room_id: str, verdict: Verdict) -> str:
        """Step 2: the bot joins the room; a non-admin must moderate it. Returns the room's label."""
        intent = self.bridge.az.intent
        try:
            was_in = room_id in await intent.get_joined_rooms()
            await intent.join_room(room_id)
            state = await intent.get_state(room_id)
        except MatrixError:
            raise LinkRefused("the bridge bot cannot join that room; invite it first", 400) from None

        async def refuse(why: str, status: int) -> LinkRefused:
            if not was_in:
                try:
                    await intent.leave_room(room_id, reason="Link refused")
                except MatrixError:
                    pass
            return LinkRefused(why, status)

        # Every line from the channel would be posted in the clear into a room its members
        # chose to encrypt (for anyone, admins too: see bridge/encrypted_rooms.py).
        if any(event.type.t == "m.room.encryption" for event in state):
            raise await refuse(f"{room_id} is encrypted, and {CANNOT_READ}", 400)
        if not verdict.needs_consent:
            return _label(state, room_id)
        have = power_in(state, requester)
        if have < MODERATOR:
            shown = "unlimited" if have == float("inf") else f"{have:g}"
            raise await refuse(f"{requester} has power level {shown} in the room; linking needs {MODERATOR}", 403)
        return _label(state, room_id)

    async def link_now(self, room_id: str, network: str, chat_id: str, name: str) -> None:
        try:
            await self.bridge.link(room_id, network, chat_id, name)
        except ValueError as exc:
            raise LinkRefused(str(exc), 409) from None

    def ask_in_background(self, requester: str, room_id: str, room_label: str, network: str, chat_id: str,
                          name: str, tell: Tell) -> float:
        """Step 3 for non-admins; returns the seconds the operators have to answer."""
        timeout = self.bridge.config.networks[network].link_consent_timeout
        keys = {(network, chat_id), ("", room_id)}
        self._caps(network).admit(requester)  # counted now that the operators are asked
        self._asking |= keys
        self.bridge.spawn(self._consent_then_link(requester, room_id, room_label, network, chat_id, name,
                                                  tell, timeout, keys))
        return timeout

    async def _consent_then_link(self, requester: str, room_id: str, room_label: str, network: str,
                                 chat_id: str, name: str, tell: Tell, timeout: float,
                                 keys: set[tuple[str, str]]) -> None:
        try:
            connector = self.bridge.networks[network].connector
            if not isinstance(connector, ConsentAsker):  # checked in step 1; config cannot change
                result = ConsentResult(granted=False, reason=f"{network} cannot ask operators")
            else:
                request = f"Matrix user {requester} wants to bridge {name} to the Matrix room {room_label}."
                try:
                    result = await connector.ask_operators(chat_id, request, timeout)
                except Exception:  # the contract says it does not raise; still, tell the user
                    log.exception("asking the operators of %s on %s failed", name, network)
                    # The details (a traceback, internals) are in the log, not in the user's room.
                    result = ConsentResult(granted=False, reason="the operators could not be asked, because of "
                                                                 "an error in the bridge (its log has the details)")
            if not result.granted:
                self._rest(network, chat_id)
                log.info("link of %s to %s on %s by %s refused: %s", room_id, name, network, requester,
                         result.reason)
                await tell(f"Not linked: {name} on {network} was not bridged to {room_id}: {result.reason}.")
                return
            try:
                await self.link_now(room_id, network, chat_id, name)
            except LinkRefused as exc:
                await tell(f"Not linked: {exc}.")
                return
            log.info("%s linked %s to %s on %s with the consent of %s", requester, room_id, name, network,
                     result.by)
            await tell(f"Linked {room_id} to {name} on {network}: {result.by}, an operator of {name}, agreed.")
        finally:
            self._asking -= keys


def _label(state: list, room_id: str) -> str:
    """How the operators see the room: its alias or name (Matrix text: the connector cleans it)."""
    alias = name = ""
    for event in state:
        content = event.content.serialize()
        if event.type.t == "m.room.canonical_alias":
            alias = content.get("alias") or ""
        elif event.type.t == "m.room.name":
            name = content.get("name") or ""
    if alias:
        return alias
    return f'"{name[:80]}" ({room_id})' if name else room_id
