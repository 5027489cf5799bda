"""Fill a bridge database with many portals, ghosts and logins, for the start-up benchmark.

Usage: python -m bench.generate_db -c CONFIG [--portals 10000] [--ghosts 100000] [--logins 1000]
(migrate first: `rapture db upgrade -c CONFIG`). Logins sit in the portals' channels, ten to a
channel, so at start each one reconnects its puppet.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import insert

from bridge.config import load_config
from bridge.db.engine import make_engine
from bridge.db.models import Ghost, Login, MatrixUser, Portal

from bench import cli

CHUNK = 5000


async def generate(db_url: str, *, network: str, domain: str, portals: int, ghosts: int, logins: int) -> None:
    engine = make_engine(db_url)

    async def chunks(model: type, rows_of: object, total: int) -> None:
        for start in range(0, total, CHUNK):
            rows = [rows_of(i) for i in range(start, min(total, start + CHUNK))]  # type: ignore[operator]
            async with engine.begin() as conn:
                await conn.execute(insert(model), rows)

    try:
        await chunks(Portal, lambda k: {"network": network, "remote_id": f"#gen{k}", "receiver": "",
                                        "room_id": f"!gen{k}:{domain}", "kind": "channel",
                                        "name": f"#gen{k}", "metadata": {}}, portals)
        await chunks(Ghost, lambda g: {"network": network, "remote_id": f"ghost{g}",
                                       "mxid": f"@{network}_ghost{g}:{domain}", "displayname": f"ghost{g}",
                                       "metadata": {}}, ghosts)
        await chunks(MatrixUser, lambda u: {"mxid": f"@gen{u}:{domain}", "metadata": {}}, logins)
        await chunks(Login, lambda u: {"mxid": f"@gen{u}:{domain}", "network": network, "nick": f"gen{u}",
                                       "state": "disconnected",
                                       "metadata": {"channels": [f"#gen{u // 10}"], "displayname": f"gen {u}"}},
                     logins)
    finally:
        await engine.dispose()


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--network", default="local")
    parser.add_argument("--portals", type=int, default=10_000)
    parser.add_argument("--ghosts", type=int, default=100_000)
    parser.add_argument("--logins", type=int, default=1_000)
    args = parser.parse_args()
    config = load_config(args.config).config
    asyncio.run(generate(config.database_url, network=args.network, domain=config.homeserver_domain,
                         portals=args.portals, ghosts=args.ghosts, logins=args.logins))


if __name__ == "__main__":
    main()
