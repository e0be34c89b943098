"""Strings with a shape: DNS labels, addresses, fingerprints, versions, digests, ...

Why a module of its own: each shape is checked once, refused with an error type of its
own (``site_name``, ``fingerprint``, ...) and a message that never echoes the value, and
(where a regular expression says it all) published as a ``pattern`` in the JSON schema.
Every section of the site file (``bootstrap.settings``) and the secret references use them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError


def _shaped(pattern: str, kind: str, message: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise PydanticCustomError(kind, message)
        return value

    return AfterValidator(check)


def _schema_pattern(pattern: str) -> Callable[[dict[str, Any]], None]:
    def extra(schema: dict[str, Any]) -> None:
        schema["pattern"] = f"^(?:{pattern})$"

    return extra


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
SiteName = Annotated[
    str,
    _shaped(_DNS_LABEL, "site_name", "expected a DNS label: lowercase letters, digits and '-'"),
    Field(json_schema_extra=_schema_pattern(_DNS_LABEL)),
]
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?"
)


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        labels = value.rstrip(".").split(".")
        if _HOSTNAME.fullmatch(value) is None or labels[-1].isdigit():
            raise PydanticCustomError("address", "expected an IP address or a DNS name") from None
    return value


Address = Annotated[str, AfterValidator(_check_address)]
_FINGERPRINT = r"SHA256:[A-Za-z0-9+/]{43}"
Fingerprint = Annotated[
    str,
    _shaped(
        _FINGERPRINT,
        "fingerprint",
        "expected an SSH host key fingerprint like SHA256: followed by 43 base64 characters "
        "(ssh-keyscan HOST | ssh-keygen -lf -)",
    ),
    Field(json_schema_extra=_schema_pattern(_FINGERPRINT)),
]
_K3S_VERSION = r"v\d+\.\d+\.\d+\+k3s\d+"
K3sVersion = Annotated[
    str,
    _shaped(_K3S_VERSION, "k3s_version", "expected a k3s version like v1.30.4+k3s1"),
    Field(json_schema_extra=_schema_pattern(_K3S_VERSION)),
]
_SEMVER = r"v?\d+\.\d+\.\d+"
Version = Annotated[
    str,
    _shaped(_SEMVER, "version", "expected a version like v1.2.3"),
    Field(json_schema_extra=_schema_pattern(_SEMVER)),
]
_SHA256 = r"[0-9a-fA-F]{64}"
Sha256 = Annotated[
    str,
    _shaped(_SHA256, "sha256", "expected a SHA-256 digest: 64 hexadecimal characters"),
    Field(json_schema_extra=_schema_pattern(_SHA256)),
]
_AGE_RECIPIENT = r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}"
AgeRecipient = Annotated[
    str,
    _shaped(
        _AGE_RECIPIENT,
        "age_recipient",
        "expected an age X25519 recipient: age1 followed by 58 bech32 characters",
    ),
    Field(json_schema_extra=_schema_pattern(_AGE_RECIPIENT)),
]
_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
EnvName = Annotated[
    str,
    _shaped(_ENV_NAME, "env_name", "expected an environment variable name like DRBOOT_TOKEN"),
    Field(json_schema_extra=_schema_pattern(_ENV_NAME)),
]
_FIO_SIZE = r"\d{1,9}[kKmMgG]?"
FioSize = Annotated[
    str,
    _shaped(_FIO_SIZE, "fio_size", "expected a size like 22m, 512k or 1g"),
    Field(json_schema_extra=_schema_pattern(_FIO_SIZE)),
]
NonEmpty = Annotated[str, Field(min_length=1)]
