#!/usr/bin/env python3
"""echo_peer: a stand-in for VoxEdge built on aiortc, to test voxcall without the engine.

Serves the engine's signalling shape — `POST /v1/sessions` (application/sdp, bearer token)
→ `201` + answer + `Location`, `DELETE` of that URL → `204` — over HTTPS with a self-signed
certificate whose SHA-256 it prints (or plain HTTP with --plain-http). Each session is an
aiortc peer that answers like the engine (DTLS server: `a=setup:passive`; no consent checks
of its own, as an ICE-lite agent sends none) and sends the received audio back.

--break makes it fail one stage on purpose, so the client's failure reports can be tested:
  answer answer 201 with an SDP of one line
  ice    answer with an ICE password it does not use
  dtls   answer with another certificate's fingerprint
  media  answer but send nothing back
  beeps  send back frames of silence instead of the audio
  beep3  silence 1.9–2.3 s of the audio sent back: voxcall's third beep by default
  delete answer DELETE with 500
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import secrets
import shutil
import ssl
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import voxwebrtc  # noqa: E402

MAX_BODY = 64 * 1024


def self_signed(host: str) -> tuple[str, str, str]:
    """A fresh EC P-256 certificate for `host`: (cert path, key path, SHA-256 fingerprint)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "echo_peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))])
    except ValueError:
        san = x509.SubjectAlternativeName([x509.DNSName(host)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(san, critical=False).sign(key, hashes.SHA256()))
    d = tempfile.mkdtemp(prefix="echo_peer-")
    cpath, kpath = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cpath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.open(kpath, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cpath, kpath, voxwebrtc.der_fingerprint(cert.public_bytes(serialization.Encoding.DER))


class EchoPeer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: dict[str, object] = {}

    def log(self, msg: str) -> None:
        print(f"echo_peer: {msg}", flush=True)

    async def answer(self, offer_sdp: str) -> str:
        from aiortc import (MediaStreamTrack, RTCConfiguration, RTCPeerConnection,
                            RTCSessionDescription)

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sid = secrets.token_urlsafe(16)  # 128 random bits, as the engine's ids
        brk = self.args.break_stage

        class Silence(MediaStreamTrack):
            """The source's frames, silenced from `start` to `stop` seconds of audio."""

            kind = "audio"

            def __init__(self, source, start: float, stop: float) -> None:  # noqa: ANN001
                super().__init__()
                self.source, self.start, self.stop = source, start, stop
                self.seconds = 0.0

            async def recv(self):  # noqa: ANN202
                frame = await self.source.recv()
                if self.start <= self.seconds < self.stop:
                    for p in frame.planes:
                        p.update(bytes(p.buffer_size))
                self.seconds += frame.samples / frame.sample_rate
                return frame

        class Delay(MediaStreamTrack):
            """The source's frames, each handed on `delay` seconds after it arrived."""

            kind = "audio"

            def __init__(self, source, delay: float) -> None:  # noqa: ANN001
                super().__init__()
                self.delay = delay
                self.queue: asyncio.Queue = asyncio.Queue()
                self.task = asyncio.ensure_future(self.pump(source))

            async def pump(self, source) -> None:  # noqa: ANN001
                from aiortc.mediastreams import MediaStreamError

                try:
                    while True:
                        self.queue.put_nowait((time.monotonic() + self.delay,
                                               await source.recv()))
                except MediaStreamError:
                    self.queue.put_nowait((0.0, None))

            async def recv(self):  # noqa: ANN202
                from aiortc.mediastreams import MediaStreamError

                due, frame = await self.queue.get()
                if frame is None:
                    raise MediaStreamError
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                return frame

            def stop(self) -> None:
                self.task.cancel()
                super().stop()

        @pc.on("track")
        def on_track(track) -> None:  # noqa: ANN001
            if track.kind != "audio" or brk == "media":
                return
            if brk == "beeps":
                track = Silence(track, 0, float("inf"))
            elif brk == "beep3":
                # voxcall's third beep, by default 2.0–2.1 s into its audio
                track = Silence(track, 1.9, 2.3)
            if self.args.delay_ms:
                track = Delay(track, self.args.delay_ms / 1000)
            pc.addTrack(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            self.log(f"session {sid[:8]}… {pc.connectionState}")
            if pc.connectionState in ("failed", "closed"):
                self.sessions.pop(sid, None)
                await pc.close()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # Answer as the engine does: the DTLS server (a=setup:passive).
        for t in pc.getTransceivers():
            t.receiver.transport._set_role("server")
        await pc.setLocalDescription(await pc.createAnswer())
        sdp = pc.localDescription.sdp
        # Say ICE-lite, as the engine does, so the client behaves as it will against it:
        # aioice then nominates by a second check with USE-CANDIDATE (regular nomination)
        # instead of on the first. (This peer still runs full ICE underneath; the client
        # answers its checks, which an engine would not send.)
        sdp = sdp.replace("\r\nt=0 0\r\n", "\r\nt=0 0\r\na=ice-lite\r\n", 1)
        if brk == "dtls":
            # Another certificate's fingerprint: ICE connects, DTLS fails its check.
            sdp = re.sub(r"a=fingerprint:sha-256 (\S+)",
                         lambda m: "a=fingerprint:sha-256 " + ":".join(["00"] * 32), sdp)
        if brk == "ice":
            # A password the peer does not use: every check fails its MESSAGE-INTEGRITY.
            # (A dead candidate port would not do: the peer's own checks reach the client,
            # which then finds the pair as peer-reflexive.)
            sdp = re.sub(r"a=ice-pwd:(\S+)", lambda m: "a=ice-pwd:" + "x" * len(m.group(1)), sdp)
        self.sessions[sid] = pc
        return sid, sdp

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, headers, body = await asyncio.wait_for(self.request(reader), 30)
        except (asyncio.TimeoutError, ConnectionError, ssl.SSLError, ValueError) as e:
            status, headers, body = 400, {}, f"bad request: {e}\n".encode()
        except asyncio.IncompleteReadError:
            writer.close()
            return
        reason = {201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
                  404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large",
                  415: "Unsupported Media Type", 500: "Internal Server Error"}.get(status, "")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass

    async def request(self, reader: asyncio.StreamReader):  # noqa: ANN201
        line = (await reader.readuntil(b"\r\n")).decode("latin-1").strip()
        method, target, _ = line.split(" ", 2)
        headers = {}
        while True:
            h = (await reader.readuntil(b"\r\n")).decode("latin-1").strip()
            if not h:
                break
            k, _, v = h.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY:
            return 413, {}, b"body over 64 KiB\n"
        body = await reader.readexactly(length) if length else b""
        text = {"Content-Type": "text/plain"}
        if self.args.token and headers.get("authorization") != f"Bearer {self.args.token}":
            return 401, text, b"bad or absent token\n"
        if target == "/v1/sessions":
            if method != "POST":
                return 405, text, b"POST only\n"
            if headers.get("content-type", "").split(";")[0].strip() != "application/sdp":
                return 415, text, b"not application/sdp\n"
            if self.args.break_stage == "answer":
                return 201, {"Content-Type": "application/sdp",
                             "Location": "/v1/sessions/none"}, b"v=0\r\n"
            sid, sdp = await self.answer(body.decode())
            self.log(f"session {sid[:8]}… answered")
            return 201, {"Content-Type": "application/sdp",
                         "Location": f"/v1/sessions/{sid}"}, sdp.encode()
        m = re.fullmatch(r"/v1/sessions/([A-Za-z0-9_-]+)", target)
        if m and method == "DELETE":
            if self.args.break_stage == "delete":
                return 500, text, b"broken on purpose\n"
            pc = self.sessions.pop(m.group(1), None)
            if pc is None:
                return 404, text, b"unknown session\n"
            await pc.close()
            self.log(f"session {m.group(1)[:8]}… deleted")
            return 204, {}, b""
        return 404, text, b"not found\n"


async def serve(args: argparse.Namespace) -> None:
    voxwebrtc.disable_consent_checks()  # as an ICE-lite server: it never sends checks
    if args.bind:
        voxwebrtc.restrict_host_addresses(args.bind)
    peer = EchoPeer(args)
    ctx = None
    if not args.plain_http:
        cert, key, fp = self_signed(args.host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        shutil.rmtree(os.path.dirname(cert))  # loaded: the key need not outlive this line
        peer.log(f"certificate sha-256 {fp}")
    server = await asyncio.start_server(peer.handle, args.host, args.port, ssl=ctx)
    scheme = "http" if args.plain_http else "https"
    peer.log(f"listening {scheme}://{args.host}:{args.port}/v1/sessions"
             + (f" (break {args.break_stage})" if args.break_stage else "")
             + (f" (echo delayed {args.delay_ms:g} ms)" if args.delay_ms else ""))
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(prog="echo_peer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="198.18.0.1", help="HTTP listen address")
    ap.add_argument("--port", type=int, default=8443)
    ap.add_argument("--bind", help="the only address to gather an ICE candidate on")
    ap.add_argument("--token", help="require `Authorization: Bearer TOKEN`")
    ap.add_argument("--plain-http", action="store_true")
    ap.add_argument("--delay-ms", type=float, default=0,
                    help="hold each echoed frame this long (checks voxcall's latency figures)")
    ap.add_argument("--break", dest="break_stage", choices=["answer", "ice", "dtls", "media", "beeps", "beep3", "delete"])
    args = ap.parse_args()
    voxwebrtc.ensure_aiortc()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
