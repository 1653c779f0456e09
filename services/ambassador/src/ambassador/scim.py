"""SCIM 2.0 (RFC 7643/7644) User resources as Okta and Microsoft Entra ID provision them; pure mapping.

Only the attributes the programme needs are kept (data minimisation): userName,
externalId, name, displayName, title, emails, active, the work address's
locality (location) and the enterprise extension's department (team). Other
attributes an identity provider sends are accepted and not stored.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import ValidationError

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
FILTER = re.compile(r'^\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
VALUE_PATH = re.compile(r'^(\w+)\[\s*(\w+)\s+eq\s+"([^"]*)"\s*\](?:\.(\w+))?$', re.IGNORECASE)
FILTERABLE = {"username": "user_name", "externalid": "external_id"}


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
    match = FILTER.match(expression)
    if not match or match.group(1).lower() not in FILTERABLE:
        raise ScimError(400, 'Supported filters: userName eq "..." and externalId eq "...".', "invalidFilter")
    value = re.sub(r"\\(.)", r"\1", match.group(2))
    return {FILTERABLE[match.group(1).lower()]: value}


def apply_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """Apply a PatchOp request (add, replace, remove) to a User resource; returns the new resource."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise ScimError(400, "A PatchOp needs an Operations list.", "invalidSyntax")
    patched = _canonical(copy.deepcopy(resource))
    for operation in body["Operations"]:
        if not isinstance(operation, dict) or str(operation.get("op", "")).lower() not in ("add", "replace", "remove"):
            raise ScimError(400, "Each operation needs op add, replace or remove.", "invalidSyntax")
        _apply(patched, str(operation["op"]).lower(), operation.get("path"), operation.get("value"))
    return patched


def _apply(resource: dict[str, Any], op: str, path: str | None, value: Any) -> None:
    if path is None:
        if op == "remove" or not isinstance(value, dict):
            raise ScimError(400, "Without a path, add and replace need an object value.",
                            "noTarget" if op == "remove" else "invalidValue")
        for key, item in value.items():
            _apply(resource, op, key, item)
        return
    if path.lower().startswith(ENTERPRISE_SCHEMA.lower() + ":"):
        container = resource.setdefault(ENTERPRISE_SCHEMA, {})
        _set(container, SUB_ATTRIBUTES.get(path[len(ENTERPRISE_SCHEMA) + 1:].lower()), op, value)
        return
    filtered = VALUE_PATH.match(path)
    if filtered:
        _apply_to_item(resource, op, filtered.groups(), value)
        return
    head, _, sub = path.partition(".")
    attribute = ATTRIBUTES.get(head.lower())
    if attribute is None:
        return  # an attribute we do not keep
    if sub:
        if not isinstance(resource.get(attribute), dict):
            resource[attribute] = {}
        _set(resource[attribute], SUB_ATTRIBUTES.get(sub.lower()), op, value)
    else:
        _set(resource, attribute, op, value)


def _set(container: dict[str, Any], key: str | None, op: str, value: Any) -> None:
    if key is None:
        return
    if op == "remove":
        container.pop(key, None)
    elif isinstance(value, dict) and isinstance(container.get(key), dict):
        container[key] = {**container[key], **value}
    else:
        container[key] = value


def _apply_to_item(resource: dict[str, Any], op: str, groups: tuple[str | None, ...], value: Any) -> None:
    # e.g. emails[type eq "work"].value, as Entra ID sends it
    attribute = ATTRIBUTES.get(str(groups[0]).lower())
    if attribute is None:
        return
    match_key = SUB_ATTRIBUTES.get(str(groups[1]).lower(), groups[1])
    items = [item for item in resource.get(attribute) or [] if isinstance(item, dict)]
    target = next((i for i in items if str(i.get(match_key)).lower() == str(groups[2]).lower()), None)
    if op == "remove" and groups[3] is None:
        resource[attribute] = [i for i in items if i is not target]
        return
    if target is None:
        target = {match_key: groups[2]}
        items.append(target)
    if groups[3] is None and isinstance(value, dict):
        target.update(value)
    else:
        _set(target, SUB_ATTRIBUTES.get(str(groups[3]).lower()), op, value)
    resource[attribute] = items


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
