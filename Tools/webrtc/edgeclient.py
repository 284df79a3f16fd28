#!/usr/bin/env python3
"""What a test client needs of the engine besides a WebRTC stack: its control socket (JSON
lines), signaling tokens minted from the run's secret, HTTPS POST/DELETE of offers, minimal
SDP offers and answers, and ICE checks of its own. Shared by hostile.py (the stranger beside
a live call) and bargein.py (the barge-in demo's checks); stdlib only, so it runs under any
python3.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import threading
import time
import zlib

# --- the engine's side: control socket -------------------------------------------------------

class Engine:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.next_id = 1

    def call(self, cmd: str, **args) -> dict:  # noqa: ANN003
        with self.lock:
            request = {"id": self.next_id, "cmd": cmd, **args}
            self.next_id += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.path)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        return json.loads(data)

    def stats(self) -> dict:
        return self.call("stats")

    def sessions(self) -> list[dict]:
        return self.call("session.list").get("sessions", [])

    def show(self, session: int) -> dict:
        return self.call("session.show", session=session).get("session", {})

    def counters(self) -> dict[str, int]:
        """One flat dictionary of every counter this script looks at."""
        s = self.stats()
        # Held sessions no check claimed are reaped by the control thread, not a worker.
        out: dict[str, int] = {"sessions": s.get("sessions", 0), "ended.connectTimeout": s.get("expired_unclaimed", 0)}
        for w in s.get("workers", []):
            for k, v in w.get("drops", {}).items():
                out["drop." + k] = out.get("drop." + k, 0) + v
            for k, v in w.get("ended", {}).items():
                out["ended." + k] = out.get("ended." + k, 0) + v
            for k, v in w.get("backend_protocol", {}).get("messages", {}).items():
                out["backend.messages." + k] = out.get("backend.messages." + k, 0) + v
        for k, v in s.get("xdp", {}).get("counters", {}).items():
            out["xdp." + k] = v
        h = s.get("handshakes", {})
        for k in ("started", "succeeded", "closed_by_client", "unexpected"):
            out["handshakes." + k] = h.get(k, 0)
        for k, v in h.get("failed", {}).items():
            out["handshakes.failed." + k] = v
        sig = s.get("signaling", {})
        for k, v in sig.get("requests", {}).items():
            out["signaling." + k] = v
        out["signaling.connections"] = sig.get("connections", 0)
        return out


def delta(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


# --- tokens ----------------------------------------------------------------------------------

def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Tokens:
    def __init__(self, secret: bytes, audience: str) -> None:
        self.secret = secret
        self.audience = audience

    def mint(self, sub: str, model: str = "echo", ttl: int = 300, aud: str | None = None,
             alg: str = "HS256", secret: bytes | None = None, exp: int | None = None) -> str:
        head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        claims = {"aud": aud or self.audience, "sub": sub, "model": model,
                  "exp": exp if exp is not None else int(time.time()) + ttl}
        body = b64url(json.dumps(claims).encode())
        mac = hmac.new(secret or self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64url(mac)}"


# --- HTTPS -----------------------------------------------------------------------------------

class Signaling:
    def __init__(self, url: str) -> None:
        u = urllib_parse(url)
        self.host, self.port, self.path = u
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE  # the attacker does not care who answers

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                source: str | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout,
                                           source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except OSError as e:  # refused, reset, timed out: no status
            return 0, {}, str(e).encode()
        finally:
            conn.close()

    def post(self, token: str | None, sdp: bytes, source: str | None = None,
             content_type: str = "application/sdp") -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", self.path, headers, sdp, source)

    def delete(self, token: str | None, location: str, source: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.request("DELETE", location, headers, b"", source)[0]


def urllib_parse(url: str) -> tuple[str, int, str]:
    m = re.match(r"https://([^:/]+):(\d+)(/.*)$", url)
    if not m:
        raise SystemExit(f"not an https URL with a port: {url}")
    return m.group(1), int(m.group(2)), m.group(3)


# --- offers ----------------------------------------------------------------------------------

def offer(ufrag: str, pwd: str, fingerprint: str | None, audio: bool = True, opus: bool = True,
          ice: bool = True, pad: int = 0) -> bytes:
    lines = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0"]
    pt, codec = (111, "opus/48000/2") if opus else (0, "PCMU/8000")
    kind = "audio" if audio else "video"
    lines += [f"m={kind} 9 UDP/TLS/RTP/SAVPF {pt}", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0"]
    if ice:
        lines += [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}"]
    if fingerprint:
        lines.append(f"a=fingerprint:sha-256 {fingerprint}")
    lines += ["a=setup:actpass", "a=mid:0", "a=sendrecv", "a=rtcp-mux", f"a=rtpmap:{pt} {codec}"]
    lines += ["a=x-pad:" + "p" * 200 for _ in range(pad)]
    return ("\r\n".join(lines) + "\r\n").encode()


def answer_fields(sdp: str) -> dict[str, str]:
    out = {}
    for key in ("ice-ufrag", "ice-pwd", "fingerprint"):
        m = re.search(rf"^a={key}:(.+?)\r?$", sdp, re.M)
        if m:
            out[key] = m.group(1).strip()
    m = re.search(r"^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp, re.M)
    if m:
        out["address"], out["port"] = m.group(1), m.group(2)
    return out


def random_ice() -> tuple[str, str]:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(random.choices(alphabet, k=8)), "".join(random.choices(alphabet, k=24))


# --- STUN ------------------------------------------------------------------------------------

def stun_check(username: str, password: str, bad_integrity: bool = False) -> tuple[bytes, bytes]:
    tid = os.urandom(12)

    def attr(t: int, v: bytes) -> bytes:
        return struct.pack("!HH", t, len(v)) + v + b"\x00" * ((4 - len(v) % 4) % 4)

    body = attr(0x0006, username.encode()) + attr(0x0024, struct.pack("!I", 1853824767))
    body += attr(0x802A, os.urandom(8)) + attr(0x0025, b"")
    header = struct.pack("!HHI", 0x0001, len(body) + 24, 0x2112A442) + tid
    mac = hmac.new(password.encode(), header + body, hashlib.sha1).digest()
    if bad_integrity:
        mac = bytes([mac[0] ^ 1]) + mac[1:]
    body += attr(0x0008, mac)
    header = struct.pack("!HHI", 0x0001, len(body) + 8, 0x2112A442) + tid
    crc = (zlib.crc32(header + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += attr(0x8028, struct.pack("!I", crc))
    return header + body, tid


def ice_connect(sock: socket.socket, peer: tuple[str, int], answer: dict[str, str], local_ufrag: str) -> bool:
    """One USE-CANDIDATE check, answered with a success response: the 5-tuple is admitted."""
    request, tid = stun_check(f"{answer['ice-ufrag']}:{local_ufrag}", answer["ice-pwd"])
    for _ in range(5):
        sock.sendto(request, peer)
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) >= 20 and data[0:2] == b"\x01\x01" and data[8:20] == tid:
            return True
    return False
