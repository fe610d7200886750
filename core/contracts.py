"""Contracts on data: what an asset declares about the data it publishes.

An asset may declare three things, stored with its registration in every backend so that a
remote producer (through the HTTP API) and the web view see them too:

- ``extra_schema``: the JSON Schema of its events' extra. Every event is checked against it
  before anything is stored; a mismatch raises :class:`~assetry.errors.ValidationError`
  naming the field. assetry's own figures (``extra["assetry"]``) are outside the schema.
- ``schema_evolution``: what a table or dataset write may do to the stored schema —
  ``"fail"`` (a new column is refused) or ``"add_columns"`` (new nullable columns are added;
  a type change is always refused).
- ``freshness``: how often the asset should update (:class:`Freshness`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from .errors import AssetTypeError, AssetValueError, ValidationError

if TYPE_CHECKING:
    from .backend import AssetRecord, NewEvent

__all__ = [
    "DEFAULT_CONTRACT",
    "SCHEMA_EVOLUTIONS",
    "AssetContract",
    "Freshness",
    "SchemaEvolution",
    "check_new_events",
    "validate_extra",
]

SchemaEvolution = Literal["fail", "add_columns"]
#: The accepted ``schema_evolution`` policies.
SCHEMA_EVOLUTIONS: Final = ("fail", "add_columns")
#: The key of assetry's own figures in an event's extra, outside the user's schema.
FIGURES_KEY: Final = "assetry"


@dataclass(frozen=True, slots=True)
class Freshness:
    """How often an asset should update: an asset whose newest event is older than
    ``max_age`` is late. With ``per_partition`` each partition's newest event is judged
    on its own (for partitioned assets)."""

    max_age: dt.timedelta
    per_partition: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_age, dt.timedelta):
            raise AssetTypeError(
                f"Freshness max_age must be a datetime.timedelta, not {type(self.max_age).__name__}"
            )
        if self.max_age <= dt.timedelta(0):
            raise AssetValueError(f"Freshness max_age must be positive, got {self.max_age}")
        if not isinstance(self.per_partition, bool):
            raise AssetTypeError("Freshness per_partition must be a bool")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the asset (``max_age`` in seconds)."""
        return {
            "max_age_seconds": self.max_age.total_seconds(),
            "per_partition": self.per_partition,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Freshness:
        """The value :meth:`to_dict` stored."""
        try:
            max_age = dt.timedelta(seconds=float(data["max_age_seconds"]))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise AssetValueError(
                f"freshness needs max_age_seconds, a positive number of seconds ({exc})"
            ) from None
        return cls(max_age, bool(data.get("per_partition", False)))

    def is_late(self, last_update: dt.datetime | None, now: dt.datetime | None = None) -> bool:
        """Whether an asset (or partition) last updated at ``last_update`` is late now;
        one that never updated is late."""
        if last_update is None:
            return True
        now = now or dt.datetime.now(dt.UTC)
        return now - last_update > self.max_age


def _schema_of(value: object) -> dict[str, Any]:
    """A JSON Schema dict from a dict or a pydantic model class, checked as a schema."""
    to_schema = getattr(value, "model_json_schema", None) if isinstance(value, type) else None
    if callable(to_schema):  # a pydantic model class
        schema = to_schema()
    elif isinstance(value, Mapping):
        schema = dict(value)
    else:
        raise AssetTypeError(
            "extra_schema must be a JSON Schema dict or a pydantic model class, "
            f"not {type(value).__name__}"
        )
    try:
        text = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise AssetValueError(f"extra_schema must be JSON: {exc}") from None
    from jsonschema.exceptions import SchemaError

    try:
        _validator(text)
    except SchemaError as exc:
        raise AssetValueError(f"extra_schema is not a valid JSON Schema: {exc.message}") from None
    return json.loads(text)


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A checked jsonschema validator for a schema's canonical JSON (cached: one per schema)."""
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@dataclass(frozen=True, slots=True)
class AssetContract:
    """The contract an asset declares; build it with :meth:`build` (which normalises and
    checks the values). The default contract declares nothing."""

    extra_schema: dict[str, Any] | None = None
    schema_evolution: SchemaEvolution = "fail"
    freshness: Freshness | None = None

    @classmethod
    def build(
        cls,
        extra_schema: object = None,
        schema_evolution: str = "fail",
        freshness: Freshness | dt.timedelta | None = None,
    ) -> AssetContract:
        """A checked contract: ``extra_schema`` a JSON Schema dict or pydantic model class,
        ``freshness`` a :class:`Freshness` or a ``timedelta`` (its ``max_age``)."""
        schema = None if extra_schema is None else _schema_of(extra_schema)
        if schema_evolution not in SCHEMA_EVOLUTIONS:
            raise AssetValueError(
                f"schema_evolution must be one of {', '.join(map(repr, SCHEMA_EVOLUTIONS))}, "
                f"not {schema_evolution!r}"
            )
        if isinstance(freshness, dt.timedelta):
            freshness = Freshness(freshness)
        elif freshness is not None and not isinstance(freshness, Freshness):
            raise AssetTypeError(
                "freshness must be a Freshness or a datetime.timedelta, "
                f"not {type(freshness).__name__}"
            )
        return cls(schema, schema_evolution, freshness)  # type: ignore[arg-type]

    @property
    def is_default(self) -> bool:
        """Whether the contract declares nothing."""
        return self == DEFAULT_CONTRACT

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored with the asset."""
        return {
            "extra_schema": self.extra_schema,
            "schema_evolution": self.schema_evolution,
            "freshness": self.freshness.to_dict() if self.freshness else None,
        }

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict` (``"{}"`` for the default contract)."""
        if self.is_default:
            return "{}"
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AssetContract:
        """The contract :meth:`to_dict` stored (an empty or missing dict is the default)."""
        if not data:
            return DEFAULT_CONTRACT
        fresh = data.get("freshness")
        return cls.build(
            data.get("extra_schema"),
            data.get("schema_evolution") or "fail",
            Freshness.from_dict(fresh) if fresh else None,
        )

    @classmethod
    def from_json(cls, text: str | None) -> AssetContract:
        """The contract :meth:`to_json` stored; text that is not a JSON object is an
        :class:`~assetry.errors.AssetValueError`."""
        if not text:
            return DEFAULT_CONTRACT
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise AssetValueError(f"an asset contract must be a JSON object ({exc})") from None
        if data is not None and not isinstance(data, Mapping):
            raise AssetValueError(
                f"an asset contract must be a JSON object, not {type(data).__name__}"
            )
        return cls.from_dict(data)

    def declared_fields(self) -> list[str]:
        """The top-level extra fields the schema declares, in declaration order (the web
        view's timeline columns)."""
        props = (self.extra_schema or {}).get("properties")
        return [str(k) for k in props] if isinstance(props, Mapping) else []

    def validate_extra(self, asset: str, extra: Mapping[str, Any]) -> None:
        """Check an event's extra against ``extra_schema`` (``extra["assetry"]`` excluded);
        raise :class:`ValidationError` naming the first failing field."""
        if self.extra_schema is not None:
            validate_extra(asset, self.extra_schema, extra)


DEFAULT_CONTRACT: Final = AssetContract()


def _field(path: Iterable[Any]) -> str:
    parts = list(path)
    if not parts:
        return "(the extra itself)"
    out = str(parts[0])
    for part in parts[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_extra(asset: str, schema: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """Check ``extra`` (without assetry's own figures) against ``schema``; raise
    :class:`ValidationError` with ``details`` listing ``{"field", "message"}`` per error."""
    user = {k: v for k, v in extra.items() if k != FIGURES_KEY}
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(user), key=lambda e: (list(e.path), e.message))
    if not errors:
        return
    from jsonschema.exceptions import best_match

    first = best_match(errors) or errors[0]
    path = list(first.path)
    if not path and first.validator == "required":
        # "'rows' is a required property": name the missing field itself
        missing = [
            name for name in first.validator_value if isinstance(name, str) and name not in user
        ]
        path = missing[:1]
    field = _field(path)
    details = [{"field": _field(e.path), "message": e.message} for e in errors]
    raise ValidationError(
        f"the extra of an event of asset {asset!r} does not match its extra_schema: "
        f"field {field}: {first.message}",
        check="extra_schema",
        details=details,
    )


def check_new_events(
    lookup: Callable[[str], AssetRecord | None], events: Sequence[NewEvent]
) -> None:
    """Check every event's extra against the stored contract of its asset, before any is
    appended (an unknown asset is left to the backend, which refuses it)."""
    contracts: dict[str, AssetContract] = {}
    for event in events:
        contract = contracts.get(event.asset)
        if contract is None:
            record = lookup(event.asset)
            contract = record.contract if record is not None else DEFAULT_CONTRACT
            contracts[event.asset] = contract
        if contract.extra_schema is not None:
            contract.validate_extra(event.asset, json.loads(event.extra_json))
