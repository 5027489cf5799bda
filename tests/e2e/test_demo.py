"""`rapture demo` brings up a working stack that a Matrix client can use as printed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.e2e.irc import IrcUser, command
from tests.e2e.matrix import TestClient, message_from, notice_from


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited early with {proc.returncode}: {proc.stdout.read()}")
        if path.exists():
            return json.loads(path.read_text())
        time.sleep(0.2)
    raise TimeoutError(f"{path} did not appear within {timeout} s")


async def test_demo_stack_answers_help(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo", "--dir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        facts = _wait_for_file(workdir / "demo.json", proc, timeout=120)
        # Log in exactly as the printed instructions say.
        async with aiohttp.ClientSession() as http:
            login = {"type": "m.login.password", "password": facts["matrix_password"],
                     "identifier": {"type": "m.id.user", "user": "demo"}}
            async with http.post(f"{facts['homeserver']}/_matrix/client/v3/login", json=login) as resp:
                assert resp.status == 200, await resp.text()
                token = (await resp.json())["access_token"]
        async with TestClient(facts["homeserver"], facts["matrix_user"], token) as demo:
            room = await demo.create_room(invite=[facts["bot"]], is_direct=True)
            await demo.wait_for_membership(room, facts["bot"], "join")
            asked = await demo.send_text(room, "help")
            answer = await demo.wait_for_event(room, notice_from(facts["bot"], reply_to=asked))
            assert "version" in answer["content"]["body"]
            # The printed alias and IRC server: a conversation both ways.
            irc = IrcUser(facts["irc_port"], "demotester")
            try:
                await irc.registered()
                await irc.join("#demo")
                portal = await demo.join(facts["example_alias"])
                await irc.wait_for(command("JOIN", "#demo", nick="demo[m]"))
                await demo.send_text(portal, "hello from the demo")
                await irc.wait_for(command("PRIVMSG", "#demo", nick="demo[m]", text="hello from the demo"))
                irc.send("PRIVMSG #demo :hello back")
                await demo.wait_for_event(portal, message_from("@local_demotester:localhost", body="hello back"))
            finally:
                irc.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "log in as demo / password demo" in output
    assert "Stopping" in output
