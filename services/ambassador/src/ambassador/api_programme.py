"""Recognition, training and signals: what the programme offers ambassadors and what they give back."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.encoders import jsonable_encoder

from advocacy_common.api_support import etag, page_size
from advocacy_common.auth import Principal, Role, require_roles
from advocacy_common.bounded import Cursor
from advocacy_common.errors import invalid, problem_responses

from .api import ADMIN, AMBASSADOR, creation_id, if_match, me, page_of, service
from .models import Person, Recognition, RecognitionKind, Signal, SignalStatus, TrainingCompletion, \
    TrainingModule, TrainingModuleText
from .schemas import CompletionRequest, CompletionView, Page, RecognitionRequest, RecognitionView, \
    SignalRequest, SignalTriageRequest, SignalView, TrainingModuleRequest, TrainingModuleView
from .service import AmbassadorService

router = APIRouter()
STALE = problem_responses(412)  # If-Match names another version
CONFLICTS = problem_responses(409, 412)  # and the resource's state forbids the change
PEOPLE = require_roles(Role.ADMIN, Role.AMBASSADOR)


def recognition_view(recognition: Recognition) -> RecognitionView:
    return RecognitionView.model_validate({**recognition.model_dump(), "recognition_id": recognition.id})


def module_view(module: TrainingModule, response: Response | None = None) -> TrainingModuleView:
    if response is not None:
        response.headers["ETag"] = etag(module.version)
    return TrainingModuleView.model_validate({**module.model_dump(), "module_id": module.id})


def signal_view(signal: Signal, response: Response | None = None) -> SignalView:
    if response is not None:
        response.headers["ETag"] = etag(signal.version)
    return SignalView.model_validate({**signal.model_dump(), "signal_id": signal.id})


def completion_view(completion: TrainingCompletion) -> CompletionView:
    return CompletionView(module_id=completion.module_id, ambassador_id=completion.person_id,
                          completed_at=completion.completed_at)


def module_text(body: TrainingModuleRequest) -> TrainingModuleText:
    return TrainingModuleText.model_validate(jsonable_encoder(body))


# --- recognition -------------------------------------------------------------------------------------

@router.post("/ambassadors/{ambassador_id}/recognitions", status_code=201, response_model=RecognitionView,
             tags=["recognition"])
async def recognise(ambassador_id: str, body: RecognitionRequest, request: Request,
                    principal: Principal = Depends(PEOPLE), ambassadors: AmbassadorService = Depends(service)):
    """Give kudos or a badge to an ambassador, with a reason. Given by people (admins or peers),
    never earned by volume: there are no points for shares."""
    if body.kind == RecognitionKind.BADGE and not body.badge:
        raise invalid("badge", "is required for a badge")
    recognition_id, request_fingerprint = creation_id(request, principal, f"recognition:{ambassador_id}", body)
    recognition = await ambassadors.recognise(
        principal.tenant, ambassador_id, principal.subject, "admin" if principal.has_any(Role.ADMIN) else "peer",
        body.kind, body.badge, body.reason, recognition_id, request_fingerprint)
    return recognition_view(recognition)


@router.get("/ambassadors/{ambassador_id}/recognitions", response_model=Page[RecognitionView], tags=["recognition"])
async def list_recognitions(ambassador_id: str, cursor: Cursor | None = None, limit: int | None = None,
                            principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Recognition an ambassador received, newest first."""
    found = await ambassadors.recognitions_received(principal.tenant, ambassador_id, cursor, page_size(limit))
    return page_of(found, recognition_view)


@router.get("/me/recognitions", response_model=Page[RecognitionView], tags=["me"])
async def my_recognitions(cursor: Cursor | None = None, limit: int | None = None, person: Person = Depends(me),
                          ambassadors: AmbassadorService = Depends(service)):
    """Recognition you received, newest first."""
    found = await ambassadors.recognitions_received(person.tenant, person.id, cursor, page_size(limit))
    return page_of(found, recognition_view)


# --- training -------------------------------------------------------------------------------------------

@router.post("/training/modules", status_code=201, response_model=TrainingModuleView, tags=["training"])
async def create_module(body: TrainingModuleRequest, request: Request, response: Response,
                        principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Add a module to the tenant's training catalogue."""
    module_id, request_fingerprint = creation_id(request, principal, "training-module", body)
    module = await ambassadors.create_module(principal.tenant, module_text(body), module_id, request_fingerprint)
    response.headers["Location"] = f"/training/modules/{module.id}"
    return module_view(module, response)


@router.get("/training/modules", response_model=Page[TrainingModuleView], tags=["training"])
async def list_modules(cursor: Cursor | None = None, limit: int | None = None, principal: Principal = Depends(PEOPLE),
                       ambassadors: AmbassadorService = Depends(service)):
    """The training catalogue, newest first."""
    return page_of(await ambassadors.list_modules(principal.tenant, cursor, page_size(limit)), module_view)


@router.get("/training/modules/{module_id}", response_model=TrainingModuleView, tags=["training"])
async def get_module(module_id: str, response: Response, principal: Principal = Depends(PEOPLE),
                     ambassadors: AmbassadorService = Depends(service)):
    """One training module."""
    return module_view(await ambassadors.module(principal.tenant, module_id), response)


@router.put("/training/modules/{module_id}", response_model=TrainingModuleView, tags=["training"], responses=STALE)
async def replace_module(module_id: str, body: TrainingModuleRequest, request: Request, response: Response,
                         principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Replace a module (If-Match with the ETag you read)."""
    module = await ambassadors.replace_module(principal.tenant, module_id, module_text(body), if_match(request))
    return module_view(module, response)


@router.post("/me/training-completions", status_code=201, response_model=CompletionView, tags=["me"])
async def complete_module(body: CompletionRequest, person: Person = Depends(me),
                          ambassadors: AmbassadorService = Depends(service)):
    """Record that you completed a training module (idempotent)."""
    return completion_view(await ambassadors.complete_module(person, body.module_id))


@router.get("/me/training-completions", response_model=Page[CompletionView], tags=["me"])
async def my_completions(cursor: Cursor | None = None, limit: int | None = None, person: Person = Depends(me),
                         ambassadors: AmbassadorService = Depends(service)):
    """The modules you completed, oldest first, with cursor pagination."""
    return page_of(await ambassadors.completions_of(person.tenant, person.id, cursor, page_size(limit)),
                   completion_view)


@router.get("/ambassadors/{ambassador_id}/training-completions", response_model=Page[CompletionView],
            tags=["training"])
async def ambassador_completions(ambassador_id: str, cursor: Cursor | None = None, limit: int | None = None,
                                 principal: Principal = Depends(ADMIN),
                                 ambassadors: AmbassadorService = Depends(service)):
    """The modules an ambassador completed, oldest first, with cursor pagination."""
    return page_of(await ambassadors.completions_of(principal.tenant, ambassador_id, cursor, page_size(limit)),
                   completion_view)


# --- signals ----------------------------------------------------------------------------------------------

@router.post("/me/signals", status_code=201, response_model=SignalView, tags=["signals"])
async def report_signal(body: SignalRequest, request: Request, person: Person = Depends(me),
                        principal: Principal = Depends(AMBASSADOR), ambassadors: AmbassadorService = Depends(service)):
    """Report a sensitive conversation you saw (URL, note, severity); the comms team triages it.
    Emits `signal.reported.v1` (without the note)."""
    signal_id, request_fingerprint = creation_id(request, principal, f"signal:{person.id}", body)
    signal = await ambassadors.report_signal(person, str(body.url), body.note, body.severity, signal_id,
                                             request_fingerprint)
    return signal_view(signal)


@router.get("/signals", response_model=Page[SignalView], tags=["signals"])
async def list_signals(status: SignalStatus | None = None, cursor: Cursor | None = None, limit: int | None = None,
                       principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Signals to triage, newest first; filter by status (new, acknowledged, closed)."""
    return page_of(await ambassadors.list_signals(principal.tenant, status, cursor, page_size(limit)), signal_view)


@router.get("/signals/{signal_id}", response_model=SignalView, tags=["signals"])
async def get_signal(signal_id: str, response: Response, principal: Principal = Depends(ADMIN),
                     ambassadors: AmbassadorService = Depends(service)):
    """One signal."""
    return signal_view(await ambassadors.signal(principal.tenant, signal_id), response)


@router.patch("/signals/{signal_id}", response_model=SignalView, tags=["signals"], responses=CONFLICTS)
async def triage_signal(signal_id: str, body: SignalTriageRequest, request: Request, response: Response,
                        principal: Principal = Depends(ADMIN), ambassadors: AmbassadorService = Depends(service)):
    """Triage: new -> acknowledged -> closed (or new -> closed). If-Match is honoured."""
    signal = await ambassadors.triage_signal(principal.tenant, signal_id, body.status, principal.subject,
                                             if_match(request))
    return signal_view(signal, response)
