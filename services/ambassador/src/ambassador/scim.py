"""SCIM 2.0 (RFC 7643/7644) User resources as Okta and Microsoft Entra ID provision them; pure mapping.

Only the attributes the programme needs are kept (data minimisation): userName,
externalId, name, displayName, title, emails, active, the work address's
locality (location) and the enterprise extension's department (team). Other
attributes an identity provider sends are accepted and not stored.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from scim2_models import Context, EnterpriseUser, PatchOp, SCIMException, ScimFilter, ScimPolicy, User
from scim2_models.path import CompareOperator, Comparison

from .models import DirectoryEntry, Person

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

# Attribute names are case-insensitive in SCIM; these are the ones we keep, by lower-case name.
ATTRIBUTES = {name.lower(): name for name in
              ("userName", "externalId", "name", "displayName", "title", "emails", "active", "addresses")}
SUB_ATTRIBUTES = {name.lower(): name for name in
                  ("givenName", "familyName", "formatted", "value", "type", "primary", "locality", "department")}
FILTERABLE = {"username": "user_name", "externalid": "external_id"}
# Filters and PATCH are scim2-models' (RFC 7644 parsing and semantics); we keep the mapping to our entry.
ScimUser = User[EnterpriseUser]
AS_IDENTITY_PROVIDERS_SEND_IT = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,  # attributes we do not model are accepted and dropped
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,  # Entra adds emails[type eq "work"].value
    remove_value_as_filter=ScimPolicy.RemoveValue.apply)  # Entra's remove with a value


class ScimError(Exception):
    """Answered in the SCIM error format (status, scimType, detail), not problem+json."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


def user_resource(person: Person, location: str) -> dict[str, Any]:
    entry = person.directory
    assert entry is not None  # erased people are not SCIM resources
    resource: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "id": person.id,
        "userName": entry.user_name,
        "active": entry.active,
        "emails": [email.model_dump() for email in entry.emails],
        "meta": {"resourceType": "User", "created": person.created_at.isoformat(),
                 "lastModified": person.updated_at.isoformat(), "location": location,
                 "version": f'W/"{person.version}"'},
    }
    name = {key: value for key, value in (("givenName", entry.given_name), ("familyName", entry.family_name))
            if value is not None}
    optional = {"externalId": entry.external_id, "displayName": entry.display_name, "title": entry.title,
                "name": name or None,
                "addresses": [{"type": "work", "locality": entry.location}] if entry.location else None}
    resource.update({key: value for key, value in optional.items() if value is not None})
    if entry.team_id is not None:
        resource[ENTERPRISE_SCHEMA] = {"department": entry.team_id}
    return resource


def _canonical(resource: dict[str, Any]) -> dict[str, Any]:
    """Known attributes under their canonical names; enterprise extension kept; the rest dropped."""
    canonical: dict[str, Any] = {}
    for key, value in resource.items():
        if key.lower() == ENTERPRISE_SCHEMA.lower() and isinstance(value, dict):
            canonical[ENTERPRISE_SCHEMA] = {SUB_ATTRIBUTES.get(k.lower(), k): v for k, v in value.items()}
        elif key.lower() in ATTRIBUTES:
            canonical[ATTRIBUTES[key.lower()]] = value
    return canonical


def _work_item(items: Any, attribute: str) -> Any:
    if not isinstance(items, list):
        return None
    dicts = [item for item in items if isinstance(item, dict)]
    chosen = next((i for i in dicts if str(i.get("type", "")).lower() == "work"), dicts[0] if dicts else None)
    return chosen.get(attribute) if chosen else None


def entry_from_resource(resource: dict[str, Any]) -> DirectoryEntry:
    """A directory entry from a SCIM User; 400 invalidValue naming the attribute when it is wrong."""
    if not isinstance(resource, dict):
        raise ScimError(400, "The request body must be a SCIM User object.", "invalidSyntax")
    data = _canonical(resource)
    name = data.get("name") if isinstance(data.get("name"), dict) else {}
    name = {SUB_ATTRIBUTES.get(k.lower(), k): v for k, v in name.items()}
    emails = [{SUB_ATTRIBUTES.get(k.lower(), k): v for k, v in email.items()}
              for email in data.get("emails") or [] if isinstance(email, dict)]
    fields = {
        "user_name": data.get("userName"),
        "external_id": data.get("externalId"),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "display_name": data.get("displayName") or name.get("formatted"),
        "title": data.get("title"),
        "emails": [{k: v for k, v in email.items() if k in ("value", "type", "primary")} for email in emails],
        "team_id": (data.get(ENTERPRISE_SCHEMA) or {}).get("department"),
        "location": _work_item(data.get("addresses"), "locality"),
        "active": data.get("active", True),
    }
    if fields["user_name"] is None:
        raise ScimError(400, "userName is required.", "invalidValue")
    try:
        return DirectoryEntry.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ScimError(400, f"{where}: {first['msg']}", "invalidValue") from None


def parse_filter(expression: str | None) -> dict[str, str]:
    """`userName eq "x"` or `externalId eq "x"` -> {"user_name": "x"}; anything else is 400 invalidFilter."""
    if not expression:
        return {}
    try:
        node = ScimFilter[ScimUser](expression).ast
    except (SCIMException, ValueError):
        node = None
    if not (isinstance(node, Comparison) and node.op == CompareOperator.eq and node.attr_path.sub_attr is None
            and node.attr_path.attr.lower() in FILTERABLE and isinstance(node.value, str)):
        raise ScimError(400, 'Supported filters: userName eq "..." and externalId eq "...".', "invalidFilter")
    return {FILTERABLE[node.attr_path.attr.lower()]: node.value}


def parse_patch(body: Any) -> PatchOp | None:
    """A PatchOp request (add, replace, remove) reduced to the attributes we keep; None when it touches
    none of them. 400 in the SCIM format when it is not a PatchOp."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise ScimError(400, "A PatchOp needs an Operations list.", "invalidSyntax")
    if not all(isinstance(op, dict) and str(op.get("op", "")).lower() in ("add", "replace", "remove")
               for op in body["Operations"]):
        raise ScimError(400, "Each operation needs op add, replace or remove.", "invalidSyntax")
    # Operations on attributes we do not store change nothing here (data minimisation), whatever
    # their value: Entra, for one, sends the enterprise `manager` as a bare string.
    kept = [operation for operation in map(_kept_part, body["Operations"]) if operation is not None]
    return _validated_patch({**body, "Operations": kept}) if kept else None


def _validated_patch(body: dict[str, Any]) -> PatchOp:
    try:
        return PatchOp[ScimUser].model_validate(body, scim_ctx=Context.RESOURCE_PATCH_REQUEST,
                                                scim_policy=AS_IDENTITY_PROVIDERS_SEND_IT)
    except ValidationError as error:
        raise _scim_error(error) from None


def _is_kept(path: str) -> bool:
    lowered = path.lower()
    if lowered.startswith(ENTERPRISE_SCHEMA.lower() + ":"):
        return lowered[len(ENTERPRISE_SCHEMA) + 1:] == "department"
    if lowered == ENTERPRISE_SCHEMA.lower():
        return True
    head = lowered.split("[", 1)[0].split(".", 1)[0]
    return head in ATTRIBUTES


def _kept_part(operation: dict[str, Any]) -> dict[str, Any] | None:
    path, value = operation.get("path"), operation.get("value")
    if path is not None:
        return operation if _is_kept(str(path)) else None
    if not isinstance(value, dict):
        return operation
    kept = {key: item for key, item in value.items() if _is_kept(key)}
    extension = kept.get(ENTERPRISE_SCHEMA)
    if isinstance(extension, dict):
        kept[ENTERPRISE_SCHEMA] = {k: v for k, v in extension.items() if k.lower() == "department"}
    return {**operation, "value": kept} if kept else None


def apply_patch(resource: dict[str, Any], patch: PatchOp | None) -> dict[str, Any]:
    """The User resource once the operations are applied (scim2-models does RFC 7644 §3.5.2)."""
    if patch is None:
        return resource
    try:
        user = ScimUser.model_validate(resource, scim_policy=AS_IDENTITY_PROVIDERS_SEND_IT)
        patch.patch(user, scim_policy=AS_IDENTITY_PROVIDERS_SEND_IT)
    except SCIMException as error:
        raise ScimError(error.status, error.detail, error.scim_type or None) from None
    except ValidationError as error:
        raise _scim_error(error) from None
    return user.model_dump(scim_ctx=Context.RESOURCE_PATCH_RESPONSE)


def _scim_error(error: ValidationError) -> ScimError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    kind = str(first["type"])
    scim_type = kind.removeprefix("scim_") if kind.startswith("scim_") and kind != "scim_error" else "invalidValue"
    return ScimError(400, f"{where}: {first['msg']}", scim_type)


def list_response(resources: list[dict[str, Any]], total: int, start_index: int) -> dict[str, Any]:
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start_index,
            "itemsPerPage": len(resources), "Resources": resources}


SERVICE_PROVIDER_CONFIG = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": True},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": 200},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": False},
    "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
                               "description": "A bearer JWT with the integrator role"}],
}
