"""Schemathesis against every service's OpenAPI, in process, on the real Kafka and database.

Each operation gets a few positive and negative examples (derandomised, so a run is repeatable),
sent with a valid token of a role the operation allows. Checked: no 5xx; the status code, content
type, headers and body are what the document declares; every 4xx is a problem document (SCIM
answers in its own `application/scim+json`, as its clients expect); an undocumented method is a 405
with `Allow`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.contract]

POSITIVE_EXAMPLES = 6
NEGATIVE_EXAMPLES = 4
REAL_OBJECT_EXAMPLES = 5
PROBLEM_JSON = "application/problem+json"
# A stream ends after its first update only when asked to: the in-process transport reads whole bodies.
FIXED_QUERY = {"max_events": 1}
METHODS = ("get", "put", "post", "delete", "patch")
# Invalid input may also be refused by the hardening limits (413 body, 414 URI, 431 headers) before it is parsed.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "431",
              "5xx"]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}})


def media_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


@schemathesis.check
def client_errors_are_problem_documents(ctx, response, case) -> bool | None:
    """Every 4xx is application/problem+json, or the other media type the operation declares for it."""
    if not 400 <= response.status_code < 500:
        return None
    declared = case.operation.definition.raw.get("responses", {}).get(str(response.status_code), {})
    allowed = set(declared.get("content", {})) or {PROBLEM_JSON}
    actual = response.headers.get("content-type", [""])[0].split(";")[0].strip().lower()
    assert actual in allowed, f"{response.status_code} answered as {actual!r}, declared {sorted(allowed)}"
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, client_errors_are_problem_documents]


def generated(operation, mode: GenerationMode, count: int, **overrides: Any) -> list:
    cases: list = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(mode, **overrides))
    def collect(case) -> None:
        cases.append(case)

    try:
        collect()
    except Unsatisfiable:
        pass  # nothing in this operation can be made invalid (no parameters, no body)
    return cases


def caller_headers(operation, tenant_a_objects, bearer) -> dict[str, str]:
    if operation.public:
        return {}
    role = sorted(operation.roles)[0] if operation.roles else "analyst"
    subject = tenant_a_objects.ambassador_login if role == "ambassador" else f"fuzz-{role}"
    return bearer(tenant_a_objects.tenant, subject, role)


async def send(client: httpx.AsyncClient, case) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
    return await client.request(kwargs["method"], kwargs["url"], headers=kwargs.get("headers"),
                                params=kwargs.get("params"), cookies=kwargs.get("cookies") or None,
                                json=kwargs.get("json"), content=kwargs.get("data"))


async def test_every_operation_holds_its_contract(services, operations, tenant_a_objects, bearer, capsys):
    failures: dict[tuple[str, int, str], str] = {}  # one example request per operation, status and failed check
    sent: Counter[str] = Counter()
    by_label = {op.label: op for op in operations}
    for name, service in services.items():
        schema = schemathesis.openapi.from_dict(service.openapi, config=CONFIG)
        for result in schema.get_all_operations():
            api_operation = result.ok()
            operation = by_label[f"{name} {api_operation.method.upper()} {api_operation.path}"]
            headers = caller_headers(operation, tenant_a_objects, bearer)
            query_names = {p["name"] for p in operation.definition.get("parameters", []) if p["in"] == "query"}
            query = {k: v for k, v in FIXED_QUERY.items() if k in query_names} or None
            cases = generated(api_operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES, headers=headers, query=query)
            known = {**tenant_a_objects.values, **tenant_a_objects.by_parameter}
            if operation.path_parameters and all(name in known for name in operation.path_parameters):
                # The same, on tenant A's real objects, so that bodies and parameters reach the use cases.
                cases += generated(api_operation, GenerationMode.POSITIVE, REAL_OBJECT_EXAMPLES, headers=headers,
                                   query=query, path_parameters={n: known[n] for n in operation.path_parameters})
            cases += generated(api_operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, headers=headers,
                               query=query)
            for case in cases:
                if case.meta.generation.mode is GenerationMode.NEGATIVE and case.media_type == "text/csv":
                    continue  # any text is a CSV document: no "invalid string" survives the wire
                response = await send(service.client, case)
                sent[operation.label] += 1
                try:
                    case.validate_response(response, checks=CHECKS, headers=headers)
                except (AssertionError, BaseExceptionGroup) as group:  # one group naming every failed check
                    for failure in getattr(group, "exceptions", [group]):
                        detail = " ".join(str(getattr(failure, "message", failure)).split())[:240]
                        failures.setdefault((operation.label, response.status_code, getattr(failure, "title", "")),
                                            f"{detail} <- {response.request.method} {response.request.url} "
                                            f"{response.request.content[:200]!r}")
    methods_probed = await undocumented_methods_answer_405(services, tenant_a_objects, bearer, failures)
    report = [f"{label} -> {status} {title}: {example}" for (label, status, title), example in sorted(failures.items())]
    with capsys.disabled():
        print(f"\ncontract fuzzing: {sum(sent.values())} requests on {len(sent)} operations "
              f"of {len(services)} services, {methods_probed} undocumented-method probes, "
              f"{len(failures)} failures")
    assert not failures, "\n".join(report)


async def undocumented_methods_answer_405(services, tenant_a_objects, bearer, failures: dict) -> int:
    """On every path, each method the document does not list answers 405 with `Allow` naming those it does."""
    probes = 0
    for name, service in services.items():
        for path, item in service.openapi["paths"].items():
            documented = {m for m in item if m in METHODS}
            url = path
            for parameter, value in tenant_a_objects.by_parameter.items():
                url = url.replace("{" + parameter + "}", value)
            for method in sorted(set(METHODS) - documented):
                probes += 1
                response = await service.client.request(method.upper(), url,
                                                        headers=bearer(tenant_a_objects.tenant, "probe", "admin"))
                allow = {m.strip().lower() for m in response.headers.get("allow", "").split(",") if m.strip()}
                if response.status_code != 405 or not documented <= allow or media_type(response) != PROBLEM_JSON:
                    failures[(f"{name} {method.upper()} {path}", response.status_code, "No 405 with Allow")] = \
                        f"Allow={response.headers.get('allow')!r} {media_type(response)}"
    return probes
