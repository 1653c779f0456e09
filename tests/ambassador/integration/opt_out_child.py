"""Opts a person out in a child process that SIGKILLs itself right after the write, before publishing."""

import asyncio
import os
import signal
import sys

from advocacy_common.mongo import create_client

from ambassador.bootstrap import service_over
from ambassador.settings import AmbassadorSettings
from ambassador.store import AmbassadorStores


async def main(mongo_uri: str, database: str, tenant: str, person_id: str) -> None:
    client = create_client(mongo_uri, "opt-out-child")
    settings = AmbassadorSettings(mongodb_uri=mongo_uri, database=database)
    ambassadors = service_over(await AmbassadorStores.open(client[database], settings.cursor_key), settings)

    async def die_before_publishing(_: str) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    ambassadors.publish_now = die_before_publishing
    await ambassadors.opt_out(await ambassadors.person(tenant, person_id), "web")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
