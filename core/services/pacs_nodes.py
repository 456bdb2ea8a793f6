"""PACS nodes (admin): add, change, test and remove the PACS the product talks to.

A node is DICOMweb (base URL, optional basic or bearer authentication) or DIMSE (called AE title, host,
port, our calling AE title). Its password or token is wrapped by the master key (core.crypto.keys
.wrap_secret, re-wrapped by a rotation) and never shown, logged or audited. `MEDSHIELD_PACS_URL` defines
one node without the Admin page:

    dicomweb+https://user:password@pacs.example.org/dicom-web    (basic; http:// for a local test PACS)
    dicomweb+https://:token@pacs.example.org/dicom-web?auth=bearer
    dimse://ORTHANC@10.0.0.5:4242?calling=MEDSHIELD
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, unquote, urlparse, urlunparse

from sqlmodel import select

from core import audit
from core.crypto.keys import unwrap_secret, wrap_secret
from core.db.models import PacsInstance, PacsNode, utcnow
from core.errors import Conflict, NotFound, PacsError, ValidationError
from core.pacs import AUTHS, KINDS, NodeConfig, client_for
from core.runtime import get_runtime
from core.security import Actor, Permission, service

PURPOSE = "pacs"
ENV_NODE = "PACS (MEDSHIELD_PACS_URL)"
_AE = re.compile(r"^[ -~]{1,16}$")


@dataclass(frozen=True)
class NodeInfo:
    """What a page may show: never the secret, only whether one is set."""

    id: int
    name: str
    kind: str
    url: str
    auth: str
    username: str
    has_secret: bool
    ae_title: str
    host: str
    port: int
    calling_ae: str
    timeout_s: float
    verify_tls: bool
    from_env: bool
    last_test_at: datetime | None
    last_test_ok: bool | None
    last_test_message: str

    @property
    def where(self) -> str:
        return self.url if self.kind == "dicomweb" else f"{self.ae_title}@{self.host}:{self.port}"


def _info(n: PacsNode) -> NodeInfo:
    return NodeInfo(n.id, n.name, n.kind, n.url, n.auth, n.username, n.secret_wrapped is not None, n.ae_title,
                    n.host, n.port, n.calling_ae, n.timeout_s, n.verify_tls, n.from_env, n.last_test_at,
                    n.last_test_ok, n.last_test_message)


def _check(name: str, kind: str, url: str, auth: str, ae_title: str, host: str, port: int, calling_ae: str,
           timeout_s: float) -> None:
    if not name.strip() or len(name) > 64:
        raise ValidationError("Give the PACS a name (1-64 characters).")
    if kind not in KINDS:
        raise ValidationError(f"The kind must be one of {', '.join(KINDS)}.")
    if not 0.5 <= float(timeout_s) <= 600:
        raise ValidationError("The timeout must be between 0.5 and 600 seconds.")
    if kind == "dicomweb":
        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValidationError("A DICOMweb node needs an http:// or https:// base URL (e.g. "
                                  "https://pacs.example.org/dicom-web).")
        if u.username or u.password:
            raise ValidationError("Put the user name and password in their own fields, not in the URL.")
        if auth not in AUTHS:
            raise ValidationError(f"Authentication must be one of {', '.join(AUTHS)}.")
    else:
        if not _AE.match(ae_title or "") or not _AE.match(calling_ae or ""):
            raise ValidationError("AE titles are 1-16 printable ASCII characters.")
        if not host.strip():
            raise ValidationError("A DIMSE node needs a host name or address.")
        if not 1 <= int(port) <= 65535:
            raise ValidationError("The port must be between 1 and 65535.")


def _config(n: PacsNode) -> NodeConfig:
    secret = ""
    if n.secret_wrapped is not None:
        secret = unwrap_secret(get_runtime().keyring.by_id(n.secret_key_id), PURPOSE, n.id,
                               bytes(n.secret_wrapped)).decode()
    return NodeConfig(n.kind, n.url, n.auth, n.username, secret, n.ae_title, n.host, n.port, n.calling_ae,
                      n.timeout_s, n.verify_tls)


def open_client(node_id: int):
    """A client for a node (for the PACS services; no permission check here: callers check)."""
    sync_env_node()
    with get_runtime().session() as s:
        n = s.get(PacsNode, node_id)
        if n is None:
            raise NotFound(f"No PACS node with id {node_id}.")
        return client_for(_config(n))


def parse_pacs_url(url: str) -> dict:
    """MEDSHIELD_PACS_URL -> node fields (and the secret)."""
    u = urlparse(url.strip())
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    if u.scheme in ("dicomweb+http", "dicomweb+https", "http", "https"):
        scheme = u.scheme.split("+")[-1]
        netloc = u.hostname or ""
        if u.port:
            netloc += f":{u.port}"
        base = urlunparse((scheme, netloc, u.path, "", "", ""))
        user, secret = unquote(u.username or ""), unquote(u.password or "")
        auth = q.get("auth") or ("basic" if user else ("bearer" if secret else "none"))
        return dict(kind="dicomweb", url=base, auth=auth, username=user if auth == "basic" else "", secret=secret,
                    ae_title="", host="", port=0, calling_ae=q.get("calling", "MEDSHIELD"))
    if u.scheme == "dimse":
        return dict(kind="dimse", url="", auth="none", username="", secret="", ae_title=unquote(u.username or ""),
                    host=u.hostname or "", port=u.port or 104, calling_ae=q.get("calling", "MEDSHIELD"))
    raise ValidationError("MEDSHIELD_PACS_URL must start with dicomweb+https://, dicomweb+http:// or dimse://.")


def sync_env_node() -> None:
    """Keep the node MEDSHIELD_PACS_URL defines in step with it (created, updated; never audited with
    its secret)."""
    rt = get_runtime()
    url = rt.settings.pacs_url
    if not url:
        return
    f = parse_pacs_url(url)
    _check(ENV_NODE, f["kind"], f["url"], f["auth"], f["ae_title"] or "X", f["host"] or "x", f["port"] or 1,
           f["calling_ae"], 15)
    with rt.session() as s:
        n = s.exec(select(PacsNode).where(PacsNode.name == ENV_NODE)).first()
        secret = f.pop("secret")
        if n is None:
            n = PacsNode(name=ENV_NODE, from_env=True, **f)
            s.add(n)
            s.flush()
        elif all(getattr(n, k) == v for k, v in f.items()) and (
                (n.secret_wrapped is None) == (not secret)) and (not secret or _config(n).secret == secret):
            return
        else:
            for k, v in f.items():
                setattr(n, k, v)
        _set_secret(n, secret)
        s.add(n)


def _set_secret(n: PacsNode, secret: str | None) -> None:
    if secret is None:
        return  # unchanged
    if secret == "":
        n.secret_wrapped, n.secret_key_id = None, None
        return
    master = get_runtime().keyring.current
    n.secret_wrapped, n.secret_key_id = wrap_secret(master, PURPOSE, n.id, secret.encode()), master.id


@service(Permission.PACS_USE)
def list_nodes(actor: Actor) -> list[NodeInfo]:
    sync_env_node()
    with get_runtime().session() as s:
        return [_info(n) for n in s.exec(select(PacsNode).order_by(PacsNode.name)).all()]


@service(Permission.PACS_MANAGE)
def save_node(actor: Actor, name: str, kind: str, url: str = "", auth: str = "none", username: str = "",
              secret: str | None = None, ae_title: str = "", host: str = "", port: int = 0,
              calling_ae: str = "MEDSHIELD", timeout_s: float = 15.0, verify_tls: bool = True,
              node_id: int | None = None) -> NodeInfo:
    """Add a node (node_id None) or change one. `secret` None keeps the stored one, "" removes it."""
    name = (name or "").strip()
    _check(name, kind, url, auth, ae_title, host, port, calling_ae, timeout_s)
    rt = get_runtime()
    with rt.session() as s:
        clash = s.exec(select(PacsNode).where(PacsNode.name == name)).first()
        if clash is not None and clash.id != node_id:
            raise Conflict(f"A PACS node is already called {name!r}.")
        if node_id is None:
            n = PacsNode(name=name, kind=kind, created_by=actor.user_id)
            s.add(n)
            s.flush()
        else:
            n = s.get(PacsNode, node_id)
            if n is None:
                raise NotFound(f"No PACS node with id {node_id}.")
            if n.from_env:
                raise Conflict("This node comes from MEDSHIELD_PACS_URL: change the variable instead.")
        n.name, n.kind, n.url, n.auth = name, kind, url.strip().rstrip("/") if kind == "dicomweb" else "", auth
        n.username = username.strip() if kind == "dicomweb" and auth == "basic" else ""
        n.ae_title, n.host = (ae_title.strip(), host.strip()) if kind == "dimse" else ("", "")
        n.port, n.calling_ae = (int(port) if kind == "dimse" else 0), calling_ae.strip() or "MEDSHIELD"
        n.timeout_s, n.verify_tls = float(timeout_s), bool(verify_tls)
        _set_secret(n, "" if kind == "dimse" or auth == "none" else secret)
        s.add(n)
        s.flush()
        info = _info(n)
    audit.record(rt.engine, actor.username, actor.role, "pacs.node_save", "success", object_type="pacs_node",
                 object_id=info.id, detail=f"kind={kind} auth={auth} new={node_id is None}")
    return info


@service(Permission.PACS_MANAGE)
def delete_node(actor: Actor, node_id: int) -> None:
    rt = get_runtime()
    with rt.session() as s:
        n = s.get(PacsNode, node_id)
        if n is None:
            raise NotFound(f"No PACS node with id {node_id}.")
        if n.from_env:
            raise Conflict("This node comes from MEDSHIELD_PACS_URL: unset the variable to remove it.")
        for row in s.exec(select(PacsInstance).where(PacsInstance.node_id == node_id)).all():
            s.delete(row)
        s.delete(n)
    audit.record(rt.engine, actor.username, actor.role, "pacs.node_delete", "success", object_type="pacs_node",
                 object_id=node_id)


@service(Permission.PACS_MANAGE)
def test_node(actor: Actor, node_id: int) -> str:
    """A QIDO-RS query (DICOMweb) or a C-ECHO (DIMSE). Returns a message; raises PacsError with the reason."""
    rt = get_runtime()
    ok, message = False, ""
    try:
        with open_client(node_id) as c:
            ms = c.echo()
        ok, message = True, f"Connected: answered in {ms:.0f} ms."
    except PacsError as exc:
        message = str(exc)
    with rt.session() as s:
        n = s.get(PacsNode, node_id)
        n.last_test_at, n.last_test_ok, n.last_test_message = utcnow(), ok, message[:255]
        s.add(n)
    audit.record(rt.engine, actor.username, actor.role, "pacs.node_test", "success" if ok else "failure",
                 object_type="pacs_node", object_id=node_id)
    if not ok:
        raise PacsError(message)
    return message


def rewrap(new) -> int:
    """Re-wrap every node's secret under the new master key (a rotation's part; keys.rotate checks)."""
    rt = get_runtime()
    n = 0
    with rt.session() as s:
        for node in s.exec(select(PacsNode).where(PacsNode.secret_wrapped.is_not(None),  # type: ignore[union-attr]
                                                  PacsNode.secret_key_id != new.id)).all():
            secret = unwrap_secret(rt.keyring.by_id(node.secret_key_id), PURPOSE, node.id, bytes(node.secret_wrapped))
            node.secret_wrapped, node.secret_key_id = wrap_secret(new, PURPOSE, node.id, secret), new.id
            s.add(node)
            n += 1
    return n
