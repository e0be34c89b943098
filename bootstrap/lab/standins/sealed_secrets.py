"""LAB SIMULATION of the Sealed Secrets controller (bitnami-labs/sealed-secrets).

Why it exists: the real controller cannot run in the lab (no kubelet, no images), yet drboot's
central promise is that it restores the sealing keys *before* the controller starts. This
stand-in reproduces the controller's behaviour from the outside, including the failure that
makes the order matter:

* at start it loads the key Secrets labelled ``sealedsecrets.bitnami.com/sealed-secrets-key=
  active`` in its namespace; with none it generates a new 4096-bit key and stores it as a
  labelled ``kubernetes.io/tls`` Secret (``generateName: sealed-secrets-key``). Keys restored
  after it started are NOT seen until it restarts (its Pod is replaced);
* it unseals every SealedSecret (``bitnami.com/v1alpha1``) with the real hybrid scheme
  (``bootstrap.sealing``), creates/updates the Secret (template metadata and type, an
  ownerReference with ``controller: true``) and refuses to touch a Secret it does not own;
* it writes ``status.conditions[type=Synced]`` (no reason; ``message`` = the error, e.g.
  ``no key could decrypt secret (password, username)``) and ``status.observedGeneration``
  through the status subresource, and emits ``Unsealed``/``ErrUnsealFailed``/
  ``ErrUpdateFailed`` Events. A SealedSecret that no key opens never becomes a Secret.

The real controller serves its newest certificate at ``/v1/cert.pem`` (HTTP, port 8080 of
the controller, reached through the API server's service proxy). Lab Pods have no IPs, so
the proxy cannot reach this stand-in: ``cert_pem()`` returns the same bytes, and
``serve_cert()`` starts an optional loopback HTTP server with ``/v1/cert.pem`` and
``/healthz``. Not modelled: key rotation (every 30 days), ``spec.template.data`` templating,
the ``managed``/``patch`` annotations, the verify/rotate endpoints.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bootstrap import sealing
from bootstrap.adapters.kube import KubeClient, NotFound
from bootstrap.errors import BootstrapError
from bootstrap.lab.standins.common import (
    STANDIN_MARK,
    ClientFactory,
    Loop,
    Obj,
    meta,
    now,
    record_event,
)

SS_API = sealing.API_VERSION
MAX_RETRIES = 5
COMPONENT = "sealed-secrets"


class SealedSecretsController(Loop):
    """The controller process; ``start()`` is a Pod start (keys are read once, then)."""

    name = "sealed-secrets"

    def __init__(
        self,
        client: ClientFactory,
        *,
        namespace: str = "kube-system",
        interval: float = 0.5,
        key_bits: int = 4096,
    ) -> None:
        super().__init__(interval)
        self._client_factory = client
        self.kube: KubeClient | None = None
        self.namespace = namespace
        self.key_bits = key_bits
        self.keys: list[sealing.KeyMaterial] = []
        self.generated_key: str | None = None
        self.ready = threading.Event()
        self._seen: dict[str, tuple[int, int, float]] = {}  # uid -> (generation, tries, next try)
        self._http: ThreadingHTTPServer | None = None

    # -- start-up: the key registry ---------------------------------------------------------

    def setup(self) -> None:
        self.kube = self._client_factory()
        secrets = self.kube.list(
            "v1", "Secret", self.namespace, label_selector=f"{sealing.KEY_LABEL}=active"
        )
        keys = []
        for s in secrets:
            try:
                keys.append(sealing.keys_from_secret(s))
            except BootstrapError as e:
                self.say("skipping key Secret %s: %s", meta(s).get("name"), e.message)
        if not keys:
            self.say(
                "no sealing key found in %s; generating a new %d-bit key",
                self.namespace,
                self.key_bits,
            )
            key, cert = sealing.generate_key(self.key_bits)
            manifest = sealing.key_secret_manifest(key, cert, "", self.namespace)
            del manifest["metadata"]["name"]
            manifest["metadata"]["generateName"] = "sealed-secrets-key"
            manifest["metadata"]["annotations"] = dict(STANDIN_MARK)
            created = self.kube.create(manifest)
            self.generated_key = meta(created).get("name")
            keys.append(sealing.keys_from_secret(created))
        keys.sort(key=lambda k: sealing.cert_not_before(k.cert_pem))
        self.keys = keys
        self.say(
            "loaded %d key(s): %s",
            len(keys),
            ", ".join(sealing.fingerprint(k.private_key.public_key()) for k in keys),
        )
        self.ready.set()

    def cert_pem(self) -> bytes:
        """The newest key's certificate, what ``GET /v1/cert.pem`` returns."""
        if not self.ready.wait(timeout=60):
            raise BootstrapError("sealed-secrets stand-in has not loaded its keys yet")
        return self.keys[-1].cert_pem

    def serve_cert(self, port: int = 0) -> tuple[str, int]:
        """Serve ``/v1/cert.pem`` and ``/healthz`` over HTTP on 127.0.0.1; returns the address."""
        ctl = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/v1/cert.pem":
                    body, ctype = ctl.cert_pem(), "application/x-pem-file"
                elif self.path == "/healthz":
                    body, ctype = b"ok", "text/plain"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        host, bound = self._http.server_address[:2]
        self.say("serving /v1/cert.pem on http://%s:%d (loopback)", host, bound)
        return str(host), int(bound)

    def stop(self, timeout: float = 10.0) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        super().stop(timeout)

    # -- the unseal loop ----------------------------------------------------------------------

    def tick(self) -> None:
        assert self.kube is not None
        items = self.kube.list(SS_API, "SealedSecret")
        live = set()
        for ss in items:
            m = meta(ss)
            uid, gen = m.get("uid", ""), int(m.get("generation") or 0)
            live.add(uid)
            seen = self._seen.get(uid)
            if seen is not None:
                seen_gen, tries, next_try = seen
                if seen_gen == gen and tries == 0 and self._secret_in_place(ss):
                    continue
                if (
                    seen_gen == gen
                    and tries
                    and (tries >= MAX_RETRIES or time.monotonic() < next_try)
                ):
                    continue
                if seen_gen != gen:
                    tries = 0
            else:
                tries = 0
            err = self._unseal(ss)
            if err is None:
                self._seen[uid] = (gen, 0, 0.0)
            else:
                tries += 1
                self._seen[uid] = (gen, tries, time.monotonic() + min(2.0**tries * 0.1, 5.0))
            self._write_status(ss, err)
        for uid in set(self._seen) - live:
            del self._seen[uid]

    def _secret_in_place(self, ss: Obj) -> bool:
        assert self.kube is not None
        m = meta(ss)
        return self.kube.get("v1", "Secret", m["name"], m["namespace"]) is not None

    def _decrypt(self, ss: Obj) -> dict[str, bytes]:
        """All values, or an error naming every data key no key could open (like the real).

        As in the controller's ``HybridDecrypt``, a key that cannot open a value (wrong key,
        wrong label, other key size) is skipped; only when none can is the value failed.
        """
        m = meta(ss)
        encrypted = (ss.get("spec") or {}).get("encryptedData")
        if not isinstance(encrypted, dict):
            return sealing.unseal_sealed_secret([k.private_key for k in self.keys], ss)
        scope = sealing.scope_of(ss)
        values: dict[str, bytes] = {}
        failed: list[str] = []
        for data_key, b64 in sorted(encrypted.items()):
            for key in self.keys:
                try:
                    values[str(data_key)] = sealing.unseal_value(
                        [key.private_key], str(b64), m["namespace"], m["name"], scope
                    )
                    break
                except sealing.TamperedSealedValue:
                    raise
                except sealing.UnsealError:
                    continue
            else:
                failed.append(str(data_key))
        if failed:
            raise sealing.NoKeyDecrypts(f"no key could decrypt secret ({', '.join(failed)})")
        return values

    def _unseal(self, ss: Obj) -> str | None:
        """Make the Secret; returns None or the error message for the Synced condition."""
        assert self.kube is not None
        m = meta(ss)
        ns, name = m["namespace"], m["name"]
        try:
            values = self._decrypt(ss)
        except sealing.UnsealError as e:
            record_event(
                self.kube,
                ss,
                "Warning",
                "ErrUnsealFailed",
                f"Failed to unseal: {e.message}",
                COMPONENT,
            )
            self.say("SealedSecret %s/%s: failed to unseal: %s", ns, name, e.message)
            return e.message
        desired = _secret_for(ss, values)
        sname = desired["metadata"]["name"]
        try:
            live = self.kube.get("v1", "Secret", sname, ns)
            if live is None:
                self.kube.create(desired)
            else:
                owners = meta(live).get("ownerReferences") or []
                if not any(o.get("uid") == m.get("uid") and o.get("controller") for o in owners):
                    msg = f'Resource "{sname}" already exists and is not managed by SealedSecret'
                    record_event(self.kube, ss, "Warning", "ErrUpdateFailed", msg, COMPONENT)
                    return f"failed update: {msg}"
                updated = dict(live)
                updated["metadata"] = {
                    **meta(live),
                    **{
                        k: desired["metadata"].get(k)
                        for k in ("labels", "annotations", "ownerReferences")
                    },
                }
                updated["data"] = desired["data"]
                updated["type"] = desired["type"]
                if updated != live:
                    self.kube.replace(updated)
        except BootstrapError as e:
            record_event(self.kube, ss, "Warning", "ErrUpdateFailed", e.message, COMPONENT)
            return e.message
        record_event(
            self.kube, ss, "Normal", "Unsealed", "SealedSecret unsealed successfully", COMPONENT
        )
        self.say("SealedSecret %s/%s unsealed into Secret %s", ns, name, sname)
        return None

    def _write_status(self, ss: Obj, err: str | None) -> None:
        assert self.kube is not None
        m = meta(ss)
        st = ss.get("status") or {}
        conds = [dict(c) for c in st.get("conditions") or []]
        cond = next((c for c in conds if c.get("type") == "Synced"), None)
        if cond is None:
            cond = {"type": "Synced"}
            conds.append(cond)
        status = "True" if err is None else "False"
        if err is None:
            cond.pop("message", None)
        else:
            cond["message"] = err
        if cond.get("status") != status:
            cond["lastTransitionTime"] = cond.get("lastUpdateTime") or now()
            cond["status"] = status
            cond["lastUpdateTime"] = now()
        with contextlib.suppress(NotFound):
            self.kube.patch_status(
                SS_API,
                "SealedSecret",
                m["name"],
                {
                    "conditions": conds,
                    "observedGeneration": int(m.get("generation") or 0),
                },
                m["namespace"],
            )


def _secret_for(ss: Obj, values: dict[str, bytes]) -> Obj:
    m = meta(ss)
    template = (ss.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    annotations = {**(tmeta.get("annotations") or {}), **STANDIN_MARK}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": template.get("type") or "Opaque",
        "metadata": {
            "name": m["name"],
            "namespace": m["namespace"],
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": SS_API,
                    "kind": "SealedSecret",
                    "name": m["name"],
                    "uid": m.get("uid"),
                    "controller": True,
                }
            ],
        },
        "data": {k: base64.b64encode(v).decode("ascii") for k, v in sorted(values.items())},
    }
