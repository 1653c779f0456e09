"""The events the ambassador service consumes: the other services' parts of GDPR exports it asked for."""

from __future__ import annotations

from advocacy_common.consuming import Delivery, Handler
from advocacy_common.events import Event, GdprExportPartWritten

from .models import ExportPart
from .service import AmbassadorService


def build_handlers(ambassadors: AmbassadorService) -> dict[type[Event], Handler]:
    async def on_export_part(delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, GdprExportPartWritten)
        await ambassadors.receive_export_part(delivery.tenant_id, ExportPart(
            export_id=event.export_id, service=event.service, page=event.page, last=event.last,
            sections=event.sections, written_at=event.written_at))

    return {GdprExportPartWritten: on_export_part}
