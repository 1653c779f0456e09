"""Recognition, training and signals: what the programme offers ambassadors and what they give back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.encoders import jsonable_encoder
from pymongo.errors import DuplicateKeyError

from advocacy_common.api_support import etag, page_size, require_if_match
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.errors import Problem, invalid, not_found

from . import handlers
from .api import ADMIN, AMBASSADOR, context, creation_id, me, page_of
from .handlers import Context, PersonNotFound
from .models import NotOptedIn, Person, RecognitionKind, SignalStatus
from .schemas import CompletionRequest, CompletionView, Page, RecognitionRequest, RecognitionView, \
    SignalRequest, SignalTriageRequest, SignalView, TrainingModuleRequest, TrainingModuleView

router = APIRouter()
PEOPLE = require_roles(Role.ADMIN, Role.AMBASSADOR)


def recognition_view(document: dict[str, Any]) -> RecognitionView:
    return RecognitionView.model_validate({**document, "recognition_id": document["_id"]})


def module_view(document: dict[str, Any]) -> TrainingModuleView:
    return TrainingModuleView.model_validate({**document, "module_id": document["_id"]})


def signal_view(document: dict[str, Any]) -> SignalView:
    return SignalView.model_validate({**document, "signal_id": document["_id"]})


def completion_view(document: dict[str, Any]) -> CompletionView:
    return CompletionView(module_id=document["module_id"], ambassador_id=document["person_id"],
                          completed_at=document["completed_at"])


def changed_meanwhile(what: str) -> Problem:
    return Problem(409, "Conflict", f"The {what} changed meanwhile; read it again.")


async def _found(ctx: Context, collection, tenant: str, document_id: str, what: str,
                 response: Response | None = None) -> dict[str, Any]:
    """The tenant's document, or 404; with its ETag on `response` when given."""
    document = await ctx.store.get_by_id(collection, tenant, document_id)
    if document is None:
        raise not_found(what)
    if response is not None:
        response.headers["ETag"] = etag(document["version"])
    return document


# --- recognition -------------------------------------------------------------------------------------

@router.post("/ambassadors/{ambassador_id}/recognitions", status_code=201, response_model=RecognitionView,
             tags=["recognition"])
async def recognise(ambassador_id: str, body: RecognitionRequest, request: Request,
                    principal: Principal = Depends(PEOPLE), ctx: Context = Depends(context)):
    """Give kudos or a badge to an ambassador, with a reason. Given by people (admins or peers),
    never earned by volume: there are no points for shares."""
    if body.kind == RecognitionKind.BADGE and not body.badge:
        raise invalid("badge", "is required for a badge")
    recipient = await ctx.store.get_person(principal.tenant, ambassador_id)
    if recipient is None or not recipient.is_ambassador:
        raise PersonNotFound(ambassador_id)
    giver = await ctx.store.get_person_by_key(principal.tenant, ctx.subject_attribute, principal.subject)
    if giver is not None and giver.id == recipient.id:
        raise invalid("ambassador_id", "recognition comes from someone else")
    document_id, request_fingerprint = creation_id(request, principal, f"recognition:{ambassador_id}", body)
    document = {"_id": document_id, "tenant": principal.tenant, "recipient_id": recipient.id,
                "giver_id": giver.id if giver else None,
                "giver_role": "admin" if principal.has_any(Role.ADMIN) else "peer",
                "kind": body.kind, "badge": body.badge, "reason": body.reason, "created_at": ctx.clock(),
                "request_fingerprint": request_fingerprint}
    stored, _ = await ctx.store.insert_idempotent(ctx.store.recognitions, document)
    return recognition_view(stored)


@router.get("/ambassadors/{ambassador_id}/recognitions", response_model=Page[RecognitionView], tags=["recognition"])
async def list_recognitions(ambassador_id: str, cursor: str | None = None, limit: int | None = None,
                            principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Recognition an ambassador received, newest first."""
    return page_of(await ctx.store.list_recognitions(principal.tenant, ambassador_id, cursor, page_size(limit)),
                   recognition_view)


@router.get("/me/recognitions", response_model=Page[RecognitionView], tags=["me"])
async def my_recognitions(cursor: str | None = None, limit: int | None = None, person: Person = Depends(me),
                          ctx: Context = Depends(context)):
    """Recognition you received, newest first."""
    return page_of(await ctx.store.list_recognitions(person.tenant, person.id, cursor, page_size(limit)),
                   recognition_view)


# --- training -------------------------------------------------------------------------------------------

@router.post("/training/modules", status_code=201, response_model=TrainingModuleView, tags=["training"])
async def create_module(body: TrainingModuleRequest, request: Request, response: Response,
                        principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Add a module to the tenant's training catalogue."""
    document_id, request_fingerprint = creation_id(request, principal, "training-module", body)
    document = {"_id": document_id, "tenant": principal.tenant, "version": 1, **jsonable_encoder(body),
                "created_at": ctx.clock(), "request_fingerprint": request_fingerprint}
    stored, _ = await ctx.store.insert_idempotent(ctx.store.training_modules, document)
    response.headers["ETag"] = etag(stored["version"])
    response.headers["Location"] = f"/training/modules/{document_id}"
    return module_view(stored)


@router.get("/training/modules", response_model=Page[TrainingModuleView], tags=["training"])
async def list_modules(cursor: str | None = None, limit: int | None = None, principal: Principal = Depends(PEOPLE),
                       ctx: Context = Depends(context)):
    """The training catalogue, newest first."""
    return page_of(await ctx.store.list_training_modules(principal.tenant, cursor, page_size(limit)), module_view)


@router.get("/training/modules/{module_id}", response_model=TrainingModuleView, tags=["training"])
async def get_module(module_id: str, response: Response, principal: Principal = Depends(PEOPLE),
                     ctx: Context = Depends(context)):
    """One training module."""
    return module_view(await _found(ctx, ctx.store.training_modules, principal.tenant, module_id,
                                    "training module", response))


@router.put("/training/modules/{module_id}", response_model=TrainingModuleView, tags=["training"])
async def replace_module(module_id: str, body: TrainingModuleRequest, request: Request, response: Response,
                         principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Replace a module (If-Match with the ETag you read)."""
    document = await _found(ctx, ctx.store.training_modules, principal.tenant, module_id, "training module")
    require_if_match(request, document["version"])
    if not await ctx.store.update_versioned(ctx.store.training_modules, principal.tenant, module_id,
                                            document["version"], jsonable_encoder(body)):
        raise changed_meanwhile("training module")
    return await get_module(module_id, response, principal, ctx)


@router.post("/me/training-completions", status_code=201, response_model=CompletionView, tags=["me"])
async def complete_module(body: CompletionRequest, person: Person = Depends(me), ctx: Context = Depends(context)):
    """Record that you completed a training module (idempotent)."""
    await _found(ctx, ctx.store.training_modules, person.tenant, body.module_id, "training module")
    document = {"_id": f"{person.tenant}:{person.id}:{body.module_id}", "tenant": person.tenant,
                "person_id": person.id, "module_id": body.module_id, "completed_at": ctx.clock()}
    try:
        await ctx.store.training_completions.insert_one(document)
    except DuplicateKeyError:
        document = await _found(ctx, ctx.store.training_completions, person.tenant, document["_id"], "completion")
    return completion_view(document)


@router.get("/me/training-completions", response_model=list[CompletionView], tags=["me"])
async def my_completions(person: Person = Depends(me), ctx: Context = Depends(context)):
    """The modules you completed."""
    return [completion_view(d) for d in await ctx.store.list_completions(person.tenant, person.id)]


@router.get("/ambassadors/{ambassador_id}/training-completions", response_model=list[CompletionView],
            tags=["training"])
async def ambassador_completions(ambassador_id: str, principal: Principal = Depends(ADMIN),
                                 ctx: Context = Depends(context)):
    """The modules an ambassador completed."""
    return [completion_view(d) for d in await ctx.store.list_completions(principal.tenant, ambassador_id)]


# --- signals ----------------------------------------------------------------------------------------------

@router.post("/me/signals", status_code=201, response_model=SignalView, tags=["signals"])
async def report_signal(body: SignalRequest, request: Request, person: Person = Depends(me),
                        principal: Principal = Depends(AMBASSADOR), ctx: Context = Depends(context)):
    """Report a sensitive conversation you saw (URL, note, severity); the comms team triages it.
    Emits `signal.reported.v1` (without the note)."""
    if not person.is_ambassador:
        raise NotOptedIn("Signals are reported by ambassadors; opt in first.")
    document_id, request_fingerprint = creation_id(request, principal, f"signal:{person.id}", body)
    stored, _ = await handlers.report_signal(ctx, person, str(body.url), body.note, body.severity, document_id,
                                             request_fingerprint)
    return signal_view(stored)


@router.get("/signals", response_model=Page[SignalView], tags=["signals"])
async def list_signals(status: SignalStatus | None = None, cursor: str | None = None, limit: int | None = None,
                       principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Signals to triage, newest first; filter by status (new, acknowledged, closed)."""
    return page_of(await ctx.store.list_signals(principal.tenant, status, cursor, page_size(limit)), signal_view)


@router.get("/signals/{signal_id}", response_model=SignalView, tags=["signals"])
async def get_signal(signal_id: str, response: Response, principal: Principal = Depends(ADMIN),
                     ctx: Context = Depends(context)):
    """One signal."""
    return signal_view(await _found(ctx, ctx.store.signals, principal.tenant, signal_id, "signal", response))


@router.patch("/signals/{signal_id}", response_model=SignalView, tags=["signals"])
async def triage_signal(signal_id: str, body: SignalTriageRequest, request: Request, response: Response,
                        principal: Principal = Depends(ADMIN), ctx: Context = Depends(context)):
    """Triage: new -> acknowledged -> closed (or new -> closed). If-Match is honoured."""
    document = await _found(ctx, ctx.store.signals, principal.tenant, signal_id, "signal")
    require_if_match(request, document["version"])
    if not await handlers.triage_signal(ctx, document, body.status, principal.subject):
        raise changed_meanwhile("signal")
    return await get_signal(signal_id, response, principal, ctx)
