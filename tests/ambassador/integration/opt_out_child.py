"""Opts a person out in a child process that SIGKILLs itself right after the write, before publishing."""

import asyncio
import os
import signal
import sys

from advocacy_common.mongo import create_client

from ambassador import handlers
from ambassador.handlers import Context
from ambassador.models import OptOutReason, opt_out
from ambassador.store import AmbassadorStore, updates_are_atomic


async def main(mongo_uri: str, database: str, tenant: str, person_id: str) -> None:
    client = create_client(mongo_uri, "opt-out-child")
    store = AmbassadorStore(client[database], atomic_updates=await updates_are_atomic(client[database]))

    async def die_before_publishing(_: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    ctx = Context(store=store, flush=die_before_publishing)
    await handlers.change_person(ctx, tenant, person_id, lambda p: opt_out(p, OptOutReason.SELF, "web", ctx.clock()))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
