"""Asking a channel's operators on IRC (connectors/irc/consent.py), with a fake connection."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irc.client import Event

from connectors.irc.consent import OperatorConsent, operators_in
from connectors.irc.flood import ConnectionGone
from connectors.irc.wire import Line


class Fake:
    def __init__(self, names: str | None, *, online: bool = True) -> None:
        self.sent: list[str] = []
        self.names = names
        self.online = online
        self.consent = OperatorConsent(send=self.send, fold=str.lower,
                                       is_ours=lambda n: n in ("rapture", "alice[m]"), names_seconds=1.0)

    def send(self, checked: Line) -> None:
        if not self.online:
            raise ConnectionGone("not connected")
        line = checked.text
        self.sent.append(line)
        if line.startswith("NAMES ") and self.names is not None:  # None: the server never answers
            chan = line.split()[1]
            loop = asyncio.get_running_loop()
            loop.call_soon(self.consent.handle, Event("namreply", "srv", "rapture", ["=", chan, self.names]))
            loop.call_soon(self.consent.handle, Event("endofnames", "srv", "rapture", [chan, "End"]))

    def say(self, nick: str, text: str) -> bool:
        return self.consent.handle(Event("privmsg", f"{nick}!u@h", "rapture", [text]))


async def asked(fake: Fake, count: int = 2) -> None:
    """Wait (bounded) until `count` question lines were written."""
    async def written() -> None:
        while sum(line.startswith("PRIVMSG") for line in fake.sent) < count:
            await asyncio.sleep(0)
    await asyncio.wait_for(written(), 2)


def test_names_prefixes() -> None:
    assert operators_in("@op +voice ~owner &admin %half @+multi plain") == [
        ("op", True), ("voice", False), ("owner", True), ("admin", True), ("half", False), ("multi", True),
        ("plain", False)]


async def test_first_operator_yes_grants_and_only_ops_are_asked() -> None:
    fake = Fake("@Op1 @op2 +voiced plain @rapture @alice[m]")
    task = asyncio.create_task(fake.consent.ask("#chan", "Matrix user @x:hs wants\r\nQUIT :x", 5))
    await asked(fake, 4)
    targets = {line.split()[1] for line in fake.sent if line.startswith("PRIVMSG")}
    assert targets == {"Op1", "op2"}  # not the voiced, not the bridge's own connections
    assert all("\r" not in line and "\n" not in line for line in fake.sent)
    assert not fake.say("plain", "yes")  # not asked: not taken
    assert not fake.say("op1", "hmm, who is that?")  # chatter is ignored
    assert fake.say("OP1", "Yes")
    result = await task
    assert result.granted and result.by == "OP1"
    assert not fake.say("op2", "no")  # answered already: the question is gone


async def test_no_refuses_and_silence_times_out() -> None:
    fake = Fake("@op")
    task = asyncio.create_task(fake.consent.ask("#chan", "request", 5))
    await asked(fake)
    fake.say("op", "no")
    result = await task
    assert not result.granted and "said no" in result.reason

    result = await Fake("@op").consent.ask("#chan", "request", 0.2)
    assert not result.granted and "no operator of #chan answered" in result.reason


async def test_no_operators_busy_operators_and_offline() -> None:
    result = await Fake("plain +v @rapture").consent.ask("#chan", "r", 1)
    assert not result.granted and "no operator" in result.reason
    result = await Fake("@op", online=False).consent.ask("#chan", "r", 1)
    assert not result.granted and "could not see" in result.reason
    silent = Fake(None)
    silent.consent = OperatorConsent(send=silent.send, fold=str.lower,
                                     is_ours=lambda n: False, names_seconds=0.05)
    result = await silent.consent.ask("#chan", "r", 1)  # the user reads why, not "()"
    assert not result.granted and "(the server did not list them in time)" in result.reason, result.reason

    fake = Fake("@op")
    first = asyncio.create_task(fake.consent.ask("#one", "r", 5))
    await asked(fake)
    second = await fake.consent.ask("#two", "r", 5)
    assert not second.granted and "another request" in second.reason
    fake.say("op", "yes")
    assert (await first).granted


async def test_an_operator_nick_no_line_can_carry_is_not_asked() -> None:
    # The nicks come from the server's NAMES reply: a hostile server's cannot reach the wire raw.
    fake = Fake("@bad\x00nick @:colon")
    result = await fake.consent.ask("#chan", "alice asks to bridge #chan", timeout=1.0)
    assert not result.granted
    assert fake.sent == ["NAMES #chan"]


async def test_a_nick_taken_over_by_someone_who_is_no_operator_cannot_answer() -> None:
    # The operator quits or changes nick while the question is open; someone else takes the
    # nick and says yes. NAMES asked again shows the nick without operator status.
    fake = Fake("@op plain")
    task = asyncio.create_task(fake.consent.ask("#chan", "request", 1.0))
    await asked(fake)
    fake.names = "op plain"  # the nick "op" is now held by a user without +o
    assert fake.say("op", "yes")
    result = await task
    assert not result.granted and "answered within" in result.reason
    assert fake.sent.count("NAMES #chan") == 2  # checked again before the yes counted


async def test_an_answer_from_another_user_at_the_operators_nick_is_ignored() -> None:
    # With userhost-in-names the bridge knows who it asked: the same nick from another host is not them.
    fake = Fake("@op!ident@ops.example.org @other!o@x")
    task = asyncio.create_task(fake.consent.ask("#chan", "request", 1.0))
    await asked(fake, 4)
    assert fake.consent.handle(Event("privmsg", "op!evil@attacker.example", "rapture", ["yes"]))
    assert not fake.consent.handle(Event("privmsg", "op!ident@ops.example.org", "rapture", ["yes"]))  # asked no more
    result = await task
    assert not result.granted
    # ... while the operator themselves is heard (the host compares without case).
    fake = Fake("@op!ident@ops.example.org")
    task = asyncio.create_task(fake.consent.ask("#chan", "request", 5))
    await asked(fake)
    assert fake.consent.handle(Event("privmsg", "op!ident@OPS.example.org", "rapture", ["yes"]))
    assert (await task).granted


async def test_a_hostile_names_reply_keeps_a_bounded_list(monkeypatch: object) -> None:
    from connectors.irc import consent

    fake = Fake("")
    task = asyncio.create_task(fake.consent._operators("#chan"))
    await asyncio.sleep(0)
    for n in range(30):
        fake.consent.handle(Event("namreply", "srv", "rapture",
                                  ["=", "#chan", " ".join(f"@op{n}_{i}" for i in range(100))]))
    fake.consent.handle(Event("endofnames", "srv", "rapture", ["#chan", "End"]))
    ops = await task
    assert len(ops) == consent.MAX_OPERATORS_SEEN


# The request is Matrix text (a user ID, a room's name or alias): hostile. Whatever it holds,
# every line the question makes is one checked IRC line to the operator asked, and `ask` does
# not raise.
HOSTILE = st.text(alphabet=st.characters(codec=None, blacklist_categories=()), max_size=300) | st.sampled_from([
    "x\rQUIT :bye", "x\nPRIVMSG NickServ :DROP x", "nul\x00here", "\x01ACTION x\x01", "\ud800lone", "é" * 5000,
])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=HOSTILE)
def test_a_hostile_request_reaches_the_wire_only_as_checked_lines(request: str) -> None:
    written: list[Line] = []

    async def run() -> object:
        fake = Fake("@op")
        plain_send = fake.send

        def send(line: Line) -> None:
            written.append(line)
            plain_send(line)

        fake.consent._send = send
        return await fake.consent.ask("#chan", request, timeout=0.01)

    result = asyncio.run(run())
    assert not result.granted  # nobody answered
    questions = [line for line in written if line.command == "PRIVMSG"]
    assert questions, written
    for line in written:
        assert line.data.endswith(b"\r\n") and len(line.data) <= 512
        body = line.data[:-2]
        assert b"\r" not in body and b"\n" not in body and b"\0" not in body
    assert {line.text.split(" ")[1] for line in questions} == {"op"}
