"""A real Orthanc PACS (Debian's `orthanc` + `orthanc-dicomweb`) in its own network namespace.

Orthanc 1.10 cannot bind to loopback only (HTTP and DICOM listen on every interface), so it runs in a
namespace made here, reachable only from this host over a veth pair (host side .1, Orthanc side .2 of
a /30). The tests, the PACS bench and the README's "try it" use this. Root is needed for `ip netns`.

    python -m scripts.orthanc_netns start   # prints the URLs; Ctrl-C stops and removes everything
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
USER, PASSWORD = "medshield", "orthanc-test-password"
OUR_AE, OUR_PORT = "MEDSHIELD", 11112  # our own Storage SCP (C-MOVE target), if one is started


def unavailable() -> str | None:
    """Why Orthanc cannot be started here, or None."""
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if _plugin() is None:
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    if os.geteuid() != 0:
        return "network namespaces need root (Orthanc 1.10 cannot bind to loopback only)"
    return None


def _plugin() -> str | None:
    for d in PLUGIN_DIRS:
        p = Path(d)
        if p.is_dir():
            for f in sorted(p.glob("libOrthancDicomWeb.so*")):
                return str(f)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Orthanc:
    name: str
    host_ip: str
    ip: str
    workdir: Path
    http_port: int = 8042
    dicom_port: int = 4242
    aet: str = "ORTHANC"
    user: str = USER
    password: str = PASSWORD
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    # --- REST helpers (seeding and reading back in tests; the product itself uses dicomweb-client/pynetdicom)
    def rest(self, method: str, path: str, data: bytes | None = None, content_type: str = "application/json",
             timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + b64encode(f"{self.user}:{self.password}".encode()).decode())
        if data is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def upload(self, dicom: bytes) -> str:
        """Store one instance through the REST API; returns Orthanc's instance id."""
        return self.rest("POST", "/instances", dicom, "application/dicom")["ID"]

    def clear(self) -> None:
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        _ip("link", "del", f"{self.name}h", check=False)
        _ip("netns", "del", self.name, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start(subnet: int | None = None, modalities: dict | None = None, timeout: float = 60) -> Orthanc:
    """Create a namespace + veth pair, write a config (authentication on, DICOMweb plugin, storage in a
    temp dir), start Orthanc in the namespace and wait for its REST API."""
    why = unavailable()
    if why:
        raise RuntimeError(why)
    subnet = subnet if subnet is not None else 100 + os.getpid() % 150
    name = f"msorth{subnet}"
    host_ip, ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
    _ip("link", "del", f"{name}h", check=False)
    _ip("netns", "del", name, check=False)
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("link", "add", f"{name}h", "type", "veth", "peer", "name", f"{name}o")
    _ip("link", "set", f"{name}o", "netns", name)
    _ip("addr", "add", f"{host_ip}/30", "dev", f"{name}h")
    _ip("link", "set", f"{name}h", "up")
    _ip("-n", name, "addr", "add", f"{ip}/30", "dev", f"{name}o")
    _ip("-n", name, "link", "set", f"{name}o", "up")
    workdir = Path(tempfile.mkdtemp(prefix="orthanc-"))
    o = Orthanc(name, host_ip, ip, workdir)
    cfg = {
        "Name": "MedShield test PACS",
        "StorageDirectory": str(workdir / "db"), "IndexDirectory": str(workdir / "db"),
        "HttpPort": o.http_port, "DicomPort": o.dicom_port, "DicomAet": o.aet,
        "RemoteAccessAllowed": True, "AuthenticationEnabled": True,
        "RegisteredUsers": {o.user: o.password},
        "Plugins": [_plugin()],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "Ssl": False,
                     "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
        "DicomModalities": modalities if modalities is not None else {"medshield": [OUR_AE, host_ip, OUR_PORT]},
        "StableAge": 1, "HttpTimeout": 60, "StorageCompression": False, "OverwriteInstances": True,
        "ConcurrentJobs": 2, "HttpThreadsCount": 8,
    }
    (workdir / "orthanc.json").write_text(json.dumps(cfg, indent=1))
    log = open(workdir / "orthanc.log", "wb")
    o.proc = subprocess.Popen(["ip", "netns", "exec", name, "Orthanc", str(workdir / "orthanc.json")],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while True:
        try:
            o.rest("GET", "/system", timeout=2)
            return o
        except (urllib.error.URLError, OSError, ConnectionError):
            if o.proc.poll() is not None or time.time() > deadline:
                tail = (workdir / "orthanc.log").read_text(errors="replace")[-1500:]
                o.stop()
                raise RuntimeError(f"Orthanc did not start: {tail}")
            time.sleep(0.3)


def main() -> int:
    if sys.argv[1:2] != ["start"]:
        print(__doc__)
        return 2
    o = start()
    print(f"Orthanc is up in network namespace {o.name}.\n"
          f"  DICOMweb: {o.dicomweb_url}   (user {o.user}, password {o.password})\n"
          f"  DIMSE:    {o.aet}@{o.ip}:{o.dicom_port}\n"
          f"  e.g. MEDSHIELD_PACS_URL='dicomweb+http://{o.user}:{o.password}@{o.ip}:{o.http_port}/dicom-web'\n"
          "Ctrl-C stops it and removes the namespace.", flush=True)
    stop = False

    def _sig(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _sig)
    signal.signal(signal.SIGTERM, _sig)
    try:
        while not stop and o.proc.poll() is None:
            time.sleep(0.5)
    finally:
        o.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
