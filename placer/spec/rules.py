"""The parameters of every policy rule (SPEC section 1, Policy table).

This is the *format* of rules; their behaviour (filter, constrain, violation) lives in the
``policies`` package, registered by the same names. ``Rule`` is a closed model with one
optional field per rule; exactly one must be set.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel


class _P(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel, populate_by_name=True,
        allow_inf_nan=False,
    )


class Empty(_P):
    """Rules whose only parameters are the policy's selectors."""


class Spread(_P):
    min_failure_domains: int = Field(ge=2)


class Budget(_P):
    max_usd_per_hour: Annotated[float, Field(ge=0)]


class Headroom(_P):
    fraction: Annotated[float, Field(ge=0, lt=1)]


class Retire(_P):
    unused_for_days: int | None = Field(default=None, ge=0)
    keep_versions: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some(self) -> Retire:
        if self.unused_for_days is None and self.keep_versions is None:
            raise ValueError("give unusedForDays, keepVersions, or both")
        return self


WorkloadName = Literal["inference", "training", "batch"]

# how each rule with parameters is written, for a rule given without them (`spread:` alone)
EXAMPLES = {
    "separate_workloads": "separateWorkloads: [training, inference]",
    "spread": "spread: {minFailureDomains: 2}",
    "max_spot_fraction": "maxSpotFraction: 0.5",
    "budget": "budget: {maxUsdPerHour: 100}",
    "headroom": "headroom: {fraction: 0.2}",
    "max_models_per_pool": "maxModelsPerPool: 4",
    "retire": "retire: {unusedForDays: 30}",
}


class Rule(_P):
    allow_pools: Empty | None = None
    deny_pools: Empty | None = None
    prefer_pools: Empty | None = None
    separate_workloads: list[WorkloadName] | None = Field(default=None, min_length=2)
    spread: Spread | None = None
    max_spot_fraction: Annotated[float, Field(ge=0, le=1)] | None = None
    budget: Budget | None = None
    headroom: Headroom | None = None
    max_models_per_pool: int | None = Field(default=None, ge=1)
    retire: Retire | None = None

    @field_validator(*EXAMPLES, mode="before")
    @classmethod
    def _given(cls, v: Any, info: ValidationInfo) -> Any:
        # `spread:` alone (null) read as no rule at all: every field None, and the policy was an
        # internal error (AssertionError: validated Rule has no rule set) in validate and plan
        if v is None:
            raise ValueError(f"is empty (null): give the rule its parameters, e.g. {EXAMPLES[str(info.field_name)]}")
        return v

    @field_validator("separate_workloads")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        # [training, training] asked for two pools' worth of one workload: as required it kept every
        # training model off its pools, as preferred it charged a penalty no plan showed
        if v is not None and len(set(v)) != len(v):
            twice = sorted({w for w in v if v.count(w) > 1})
            raise ValueError(f"lists {', '.join(twice)} more than once; name each workload once")
        return v

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if len(data) == 0:
                raise ValueError(f"give exactly one rule, one of: {', '.join(RULE_NAMES)}")
            if len(data) > 1:
                raise ValueError(
                    f"give exactly one rule per policy, found {len(data)}: {', '.join(map(str, data))}; "
                    "split them into separate Policy documents"
                )
            # `allowPools: {}` and `allowPools:` (null) mean the same.
            key = next(iter(data))
            if key in ("allowPools", "denyPools", "preferPools") and data[key] is None:
                return {key: {}}
        return data

    @cached_property  # asked once per (model, pool) pair and policy: 650,279 times at bench L, 2.2 s uncached
    def name(self) -> str:
        for field_name, info in type(self).model_fields.items():
            if getattr(self, field_name) is not None:
                return info.alias or field_name
        raise AssertionError("validated Rule has no rule set")

    @cached_property
    def params(self) -> Any:
        for field_name in type(self).model_fields:
            value = getattr(self, field_name)
            if value is not None:
                return value
        raise AssertionError("validated Rule has no rule set")


RULE_NAMES = tuple(info.alias or name for name, info in Rule.model_fields.items())
