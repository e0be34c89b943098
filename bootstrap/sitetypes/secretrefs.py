"""References to secrets: ``{env: VAR}``, ``{file: PATH}`` or ``{escrow: ITEM}``, never a value.

Why a module of its own: a field that needs a secret takes one of these references and
refuses a plain value with an ``inline_secret`` error that does not echo it (a secret
pasted into a site file must not reappear in a terminal or a log). Only the reference is
validated here; the secret itself is read at run time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from bootstrap.sitetypes.model import SiteModel
from bootstrap.sitetypes.paths import SitePath
from bootstrap.sitetypes.shaped import EnvName

EscrowItem = Literal["k3s_token", "deploy_key", "known_hosts"]


class SecretRef(SiteModel):
    """Where a secret can be read at run time: an environment variable or a file."""

    env: EnvName | None = Field(
        default=None, description="Name of an environment variable holding it."
    )
    file: SitePath | None = Field(
        default=None, description="File holding it (0600, read at run time)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise PydanticCustomError(
                "secret_ref", "expected exactly one of {env: VAR} or {file: PATH}"
            )
        return self


class EscrowRef(SiteModel):
    """A secret kept in the escrow bundle (restored before it is needed)."""

    escrow: EscrowItem = Field(description="Name of the item in the escrow bundle.")


def _refuse_inline(suggest: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is None or isinstance(value, dict | SecretRef | EscrowRef):
            return value
        raise PydanticCustomError(
            "inline_secret", "inline secret not allowed: use {suggest}", {"suggest": suggest}
        )

    return BeforeValidator(check)


def _ref_kind(value: Any) -> str | None:
    if isinstance(value, EscrowRef) or (isinstance(value, dict) and "escrow" in value):
        return "escrow-ref"
    if isinstance(value, SecretRef | dict):
        return "secret-ref"
    return None


_AnyRef = Annotated[EscrowRef, Tag("escrow-ref")] | Annotated[SecretRef, Tag("secret-ref")]
SecretOnly = Annotated[SecretRef, _refuse_inline("{env: VAR} or {file: PATH}")]
K3sTokenRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: k3s_token}"),
]
DeployKeyRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: deploy_key}"),
]
KnownHostsRef = Annotated[
    _AnyRef,
    Discriminator(_ref_kind),
    _refuse_inline("{env: VAR}, {file: PATH} or {escrow: known_hosts}"),
]
