"""``python -m guahao.hospital_connectors.simulator``: run the reference HIS.

Prints one JSON line when it is ready, ``{"fhir": URL, "mllp_port": N, "admin": URL}``, so
a test or a script can start it on free ports (``--port 0 --mllp-port 0``) and find it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import uvicorn

from guahao.hospital_connectors.simulator.app import Simulator
from guahao.hospital_connectors.simulator.store import HisStore


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guahao-his-simulator", description=__doc__)
    parser.add_argument("--hospital", default="sim1", help="hospital code (also MSH-4 facility)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="HTTP port (0: any free one)")
    parser.add_argument("--mllp-port", type=int, default=2575, help="MLLP port (0: any)")
    parser.add_argument("--platform-mllp", default="", help="HOST:PORT of the platform's MLLP")
    parser.add_argument("--store", default="", help="JSON file of the HIS's store")
    parser.add_argument("--doctors", type=int, default=4)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--start", default="", help="first day of slots (default: today)")
    parser.add_argument("--capacity", type=int, default=3, help="units per 30-minute segment")
    parser.add_argument(
        "--client-jwk",
        action="append",
        default=[],
        metavar="CLIENT_ID=FILE",
        help="a SMART backend client's public JWK (JSON); FHIR calls then need its token",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    path = Path(args.store) if args.store else None
    if path is not None and path.exists():
        store = HisStore.load(path)
    else:
        start = date.fromisoformat(args.start) if args.start else datetime.now(UTC).date()
        store = HisStore.generate(
            args.hospital,
            doctors=args.doctors,
            days=args.days,
            start=start,
            now=datetime.now(UTC),
            capacity=args.capacity,
            path=path,
        )
    target = None
    if args.platform_mllp:
        host, _, port = args.platform_mllp.rpartition(":")
        target = (host, int(port))
    keys = {}
    for entry in args.client_jwk:
        client_id, _, file = entry.partition("=")
        keys[client_id] = json.loads(await asyncio.to_thread(Path(file).read_text))
    sim = Simulator(
        store,
        platform_mllp=target,
        client_keys=keys,
        mllp_listen=(args.host, args.mllp_port),
    )
    mllp_port = await sim.mllp_server.start()
    config = uvicorn.Config(
        sim.app(), host=args.host, port=args.port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    sim.base_url = f"http://{args.host}:{port}"
    print(
        json.dumps(
            {
                "fhir": f"{sim.base_url}/fhir",
                "admin": f"{sim.base_url}/admin",
                "mllp_port": mllp_port,
            }
        ),
        flush=True,
    )
    try:
        await task
    finally:
        await sim.mllp_server.stop()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(_arguments(argv)))


if __name__ == "__main__":
    main()
    sys.exit(0)
