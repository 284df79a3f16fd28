#!/usr/bin/env python3
"""A hostile stranger beside a live call (issue 15), run by `voxedge demo --hostile`.

While a real aiortc call (voxcall.py, started here once the listener is being flooded) runs
through the engine, this script attacks every interface a stranger can reach — the public
HTTPS listener, the token check, the offer parser, the media port with STUN, DTLS and
garbage — and checks each attack from the engine's side over its control socket: the
request refused with the right status, the drop counted under the right reason, the slot
back when it should be. The call must keep flowing: voxcall.py finds every one of its beeps
in the echo or this script fails.

Runs in the demo's far namespace: the sources it attacks from (198.18.0.16 and up) are
addresses the demo put on the far side's interface. It reads the token secret the engine
verifies with and mints its own tokens (good, expired, wrong audience, badly signed). It
reaches the engine's private /healthz with `ip netns exec` (the metrics listener is on the
edge's loopback). Exit status 0 only when every check passed and the call passed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edgeclient import (  # noqa: E402  (the control socket, tokens, HTTPS, offers, STUN)
    Engine, Signaling, Tokens, answer_fields, delta, ice_connect, offer, random_ice, stun_check, urllib_parse,
)

FAILURES: list[str] = []


def check(ok: bool, what: str, detail: str = "") -> bool:
    print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail and not ok else ""), flush=True)
    if not ok:
        FAILURES.append(what + (f": {detail}" if detail else ""))
    return ok


# --- a DTLS client of our own (pyOpenSSL over memory BIOs, as aiortc's) -------------------------

class Certificate:
    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile")])
        now = time.time()
        import datetime
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(datetime.datetime.fromtimestamp(now - 86400, datetime.timezone.utc))
                .not_valid_after(datetime.datetime.fromtimestamp(now + 86400, datetime.timezone.utc))
                .sign(key, hashes.SHA256()))
        self.cert = crypto.X509.from_cryptography(cert)
        self.key = crypto.PKey.from_cryptography_key(key)
        der = cert.public_bytes(serialization.Encoding.DER)
        self.fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def dtls_client(cert: Certificate) -> SSL.Connection:
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.use_certificate(cert.cert)
    ctx.use_privatekey(cert.key)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *a: True)
    ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


def flush(conn: SSL.Connection, sock: socket.socket, peer: tuple[str, int]) -> None:
    """Sends what OpenSSL wrote into its memory BIO."""
    while True:
        try:
            data = conn.bio_read(65536)
        except SSL.WantReadError:
            return
        sock.sendto(data, peer)


def pump(conn: SSL.Connection, sock: socket.socket, peer: tuple[str, int]) -> bool:
    """Steps the handshake and sends its output. True once it is done."""
    try:
        conn.do_handshake()
        done = True
    except SSL.WantReadError:
        done = False
    flush(conn, sock, peer)
    return done


# --- the run ---------------------------------------------------------------------------------

class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = Engine(args.control)
        self.tokens = Tokens(open(args.secret_file, "rb").read().rstrip(b"\n"), args.audience)
        self.http = Signaling(args.url)
        host, port, _ = urllib_parse(args.url)
        self.listener = (host, port)
        self.media = (host, args.media_port)
        self.sources = [f"198.18.0.{16 + i}" for i in range(args.sources)]
        self.call: subprocess.Popen | None = None
        self.subject = 0
        self.last_subject = ""

    def fresh_subject(self) -> str:
        self.subject += 1
        return f"hostile-{self.subject}"

    def healthz(self) -> int:
        """The private listener's /healthz, from inside the edge's namespace."""
        code = ("import urllib.request,sys\n"
                f"try: print(urllib.request.urlopen('http://{self.args.metrics}/healthz', timeout=5).status)\n"
                "except Exception as e: print(getattr(e, 'code', 0))\n")
        out = subprocess.run(["ip", "netns", "exec", self.args.edge_namespace, sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return int(out or 0)

    def post_session(self, source: str | None = None, sub: str | None = None,
                     fingerprint: str = "00:" * 31 + "00") -> tuple[int, dict[str, str], str, str, str]:
        ufrag, pwd = random_ice()
        self.last_subject = sub or self.fresh_subject()
        token = self.tokens.mint(self.last_subject)
        status, headers, body = self.http.post(token, offer(ufrag, pwd, fingerprint), source)
        return status, headers, body.decode(errors="replace"), token, ufrag

    def session_of(self, subject: str) -> int | None:
        """The engine's id of the live session `subject` made (session.list names its subject)."""
        return next((s["id"] for s in self.engine.sessions() if s.get("subject") == subject), None)

    def wait_gone(self, engine_ids: set[int], seconds: float) -> float | None:
        start = time.time()
        while time.time() - start < seconds:
            live = {s["id"] for s in self.engine.sessions()}
            if not (engine_ids & live):
                return time.time() - start
            time.sleep(0.2)
        return None

    def engine_ids(self) -> set[int]:
        return {s["id"] for s in self.engine.sessions()}

    # 1. the flood, with the real call and /healthz answered through it
    def flood(self, stop: threading.Event, opened: list[int]) -> None:
        """Half-open (TCP only, silent) and slow (a ClientHello dribbled a byte a second)
        connections from every attack source, up to each source's connection cap, reopened as
        the listener's deadlines close them."""
        hello = bytes.fromhex("16030100c8010000c40303") + os.urandom(32) + bytes.fromhex("000002c02b0100")

        def one(source: str, slow: bool) -> None:
            while not stop.is_set():
                try:
                    s = socket.create_connection(self.listener, timeout=2, source_address=(source, 0))
                except OSError:
                    time.sleep(0.2)
                    continue
                opened[0] += 1
                s.settimeout(1)
                try:
                    for b in hello if slow else b"":
                        if stop.is_set():
                            break
                        s.send(bytes([b]))
                        time.sleep(1)
                    while not stop.is_set():
                        try:
                            if s.recv(1) == b"":
                                break  # the listener closed it: open another
                        except socket.timeout:
                            continue
                except OSError:
                    pass
                finally:
                    s.close()
                time.sleep(0.1)

        per_source = self.args.flood_per_source
        flooders = self.sources[:self.args.flood_sources]
        with ThreadPoolExecutor(max_workers=len(flooders) * per_source) as pool:
            for source in flooders:
                for i in range(per_source):
                    pool.submit(one, source, i % 2 == 1)
            stop.wait()

    def start_call(self) -> None:
        print(f"call: {' '.join(self.args.call[:2])} … (from 198.18.0.2, through the flood)", flush=True)
        self.call = subprocess.Popen(self.args.call)

    def wait_connected(self, seconds: float) -> bool:
        start = time.time()
        while time.time() - start < seconds:
            if self.call is not None and self.call.poll() is not None:
                return False
            if any(s.get("state") == "connected" for s in self.engine.sessions()):
                return True
            time.sleep(0.2)
        return False

    def run(self) -> int:
        print(f"hostile: {len(self.sources)} attack sources (198.18.0.16…), engine {self.media[0]}, "
              f"listener :{self.listener[1]}, media :{self.media[1]}", flush=True)
        base = self.engine.counters()
        stop = threading.Event()
        opened = [0]
        flooder = threading.Thread(target=self.flood, args=(stop, opened), daemon=True)
        flooder.start()
        time.sleep(self.args.flood_seconds / 2)
        print(f"flood: {opened[0]} connections opened so far ({self.args.flood_per_source} per source, "
              "half silent, half a ClientHello byte a second)", flush=True)
        self.start_call()
        health = self.healthz()
        connected = self.wait_connected(20)
        check(health == 200, "private /healthz answers 200 during the flood", f"got {health}")
        check(connected, "the real call's POST is answered and it connects during the flood")
        time.sleep(max(0, self.args.flood_seconds / 2))
        stop.set()
        flooder.join(timeout=10)
        after = self.engine.counters()
        cut = delta(base, after, "signaling.handshake_timeout")
        refused = delta(base, after, "signaling.connection_refused")
        print(f"flood over: {opened[0]} connections; the listener cut {cut} at its TLS deadline and "
              f"refused {refused} past its per-source cap", flush=True)
        check(cut > 0, "half-open and slow TLS connections are cut at the handshake deadline", f"{cut}")
        check(refused > 0, "connections past a source's cap are refused", f"{refused}")
        if not connected:
            return self.finish()
        for case in (self.tokens_and_caps, self.malformed_offers, self.silent_client_hello,
                     self.fingerprints, self.media_garbage, self.thousand_posts):
            case()
        return self.finish()

    # 2. tokens, the subject cap, DELETE
    def tokens_and_caps(self) -> None:
        print("tokens, subject cap, DELETE:", flush=True)
        before = self.engine.counters()
        ufrag, pwd = random_ice()
        sdp = offer(ufrag, pwd, "00:" * 31 + "00")
        now = int(time.time())
        bad = {
            "absent": None,
            "expired": self.tokens.mint("x", exp=now - 5),
            "wrong audience": self.tokens.mint("x", aud="someone-else"),
            "bad signature": self.tokens.mint("x", secret=b"not the secret " * 3),
            "alg none": self.tokens.mint("x", alg="none"),
            "past the maximum lifetime": self.tokens.mint("x", ttl=10 * 365 * 86400),
            "not a JWT": "garbage",
        }
        for name, token in bad.items():
            status = self.http.post(token, sdp, self.sources[0])[0]
            check(status == 401, f"POST, token {name} → 401", f"got {status}")
        # The cap: four live sessions for one subject, the fifth refused.
        subject = self.fresh_subject()
        made = []
        for i in range(5):
            status, headers, body, token, _ = self.post_session(self.sources[1], sub=subject)
            made.append((status, headers.get("location"), token))
        check([m[0] for m in made] == [201, 201, 201, 201, 403], "a subject's fifth live session → 403",
              f"{[m[0] for m in made]}")
        other = self.tokens.mint(self.fresh_subject())
        loc = made[0][1] or "/v1/sessions/none"
        check(self.http.delete(other, loc, self.sources[2]) == 404, "DELETE of another subject's session → 404")
        check(self.http.delete(made[0][2], "/v1/sessions/" + "0" * 32, self.sources[2]) == 404,
              "DELETE of an unknown session → 404")
        check(self.http.delete(made[0][2], "/v1/sessions/../../etc", self.sources[2]) == 404,
              "DELETE of a malformed id → 404")
        check(self.http.delete(None, loc, self.sources[2]) == 401, "DELETE without a token → 401")
        live_before = self.engine.counters()["sessions"]
        codes = [self.http.delete(token, location, self.sources[2]) for _, location, token in made[:4] if location]
        check(codes == [204] * 4, "DELETE by the creator → 204 for each", f"{codes}")
        check(self.http.delete(made[0][2], loc, self.sources[2]) == 404, "the same DELETE again → 404")
        after = self.engine.counters()
        check(live_before - after["sessions"] == 4, "the four slots are back at once",
              f"{live_before} → {after['sessions']}")
        check(delta(before, after, "signaling.bad_token") == len(bad) + 1, "every bad token counted",
              f"{delta(before, after, 'signaling.bad_token')}")
        check(delta(before, after, "signaling.subject_cap") == 1, "the cap counted")

    # 3. every malformed offer
    def malformed_offers(self) -> None:
        print("malformed offers:", flush=True)
        before = self.engine.counters()
        ufrag, pwd = random_ice()
        fp = "00:" * 31 + "00"
        token = self.tokens.mint(self.fresh_subject())
        cases = [
            ("not SDP (application/json)", offer(ufrag, pwd, fp), "application/json", 415),
            ("a body over 64 KiB", offer(ufrag, pwd, fp, pad=330), "application/sdp", 413),
            ("no audio m-line", offer(ufrag, pwd, fp, audio=False), "application/sdp", 400),
            ("no Opus", offer(ufrag, pwd, fp, opus=False), "application/sdp", 400),
            ("no fingerprint", offer(ufrag, pwd, None), "application/sdp", 400),
            ("no ICE credentials", offer(ufrag, pwd, fp, ice=False), "application/sdp", 400),
            ("not text", os.urandom(600), "application/sdp", 400),
            ("empty", b"", "application/sdp", 400),
        ]
        for name, body, media, want in cases:
            status, _, reason = self.http.post(token, body, self.sources[3], media)
            one_line = reason.count(b"\n") <= 1
            check(status == want and one_line, f"offer with {name} → {want} and a one-line reason",
                  f"got {status} {reason[:80]!r}")
        after = self.engine.counters()
        check(after["sessions"] == before["sessions"], "no slot taken by a refused offer")

    # 4. a ClientHello and then silence; DTLS from a 5-tuple ICE never admitted
    def silent_client_hello(self) -> None:
        print("DTLS: a ClientHello then silence; DTLS from an unvalidated 5-tuple:", flush=True)
        before = self.engine.counters()
        status, _, body, _, ufrag = self.post_session(self.sources[4])
        if not check(status == 201, "POST for the silent client → 201", f"{status}"):
            return
        answer = answer_fields(body)
        new = self.session_of(self.last_subject)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.sources[4], 0))
        sock.settimeout(0.5)
        check(ice_connect(sock, self.media, answer, ufrag), "its check is answered (the 5-tuple admitted)")
        conn = dtls_client(Certificate())
        pump(conn, sock, self.media)  # the ClientHello, and nothing after it
        # From another port of the same address, ICE never done: dropped before the worker.
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind((self.sources[4], 0))
        other = dtls_client(Certificate())
        pump(other, stranger, self.media)
        time.sleep(0.5)
        mid = self.engine.counters()
        unadmitted = delta(before, mid, "xdp.drop_unadmitted") + delta(before, mid, "drop.unknownFlow")
        check(unadmitted >= 1, "DTLS from an unvalidated 5-tuple is dropped (XDP drop_unadmitted, or unknownFlow "
              "on kernel sockets)", f"{unadmitted}")
        gone = self.wait_gone({new}, 15) if new is not None else None
        after = self.engine.counters()
        check(gone is not None, "the silent client's slot is back by its deadline",
              f"session {new} still live after 15 s")
        reaped = (delta(before, after, "handshakes.failed.timeout") + delta(before, after, "ended.connectTimeout")
                  + delta(before, after, "ended.handshakeFailed"))
        check(reaped >= 1, "its end is counted (handshake timeout or connect deadline)", f"{reaped}")
        if gone is not None:
            print(f"       slot back {gone:.1f} s after the ClientHello", flush=True)
        sock.close()
        stranger.close()

    # 5. the wrong certificate, then the right one (the client itself works), STUN with a bad MAC
    def fingerprints(self) -> None:
        print("DTLS: a wrong certificate fingerprint; STUN with a bad MESSAGE-INTEGRITY:", flush=True)
        for honest in (False, True):
            before = self.engine.counters()
            mine = Certificate()
            claimed = mine.fingerprint if honest else Certificate().fingerprint
            status, _, body, _, ufrag = self.post_session(self.sources[5], fingerprint=claimed)
            if not check(status == 201, "POST → 201", f"{status}"):
                return
            answer = answer_fields(body)
            new = self.session_of(self.last_subject)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.sources[5], 0))
            sock.settimeout(0.3)
            if not honest:
                bad, _ = stun_check(f"{answer['ice-ufrag']}:{ufrag}", answer["ice-pwd"], bad_integrity=True)
                sock.sendto(bad, self.media)
                try:
                    sock.recvfrom(2048)
                    answered = True
                except socket.timeout:
                    answered = False
                mid = self.engine.counters()
                check(not answered and delta(before, mid, "drop.stunRejected") >= 1,
                      "a check with a bad MESSAGE-INTEGRITY gets no answer and is counted (stunRejected)",
                      f"answered={answered}, counted {delta(before, mid, 'drop.stunRejected')}")
            check(ice_connect(sock, self.media, answer, ufrag), "ICE connects")
            conn = dtls_client(mine)
            done = pump(conn, sock, self.media)
            deadline = time.time() + 8
            while not done and time.time() < deadline:
                try:
                    data, _ = sock.recvfrom(4096)
                except socket.timeout:
                    continue
                conn.bio_write(data)
                try:
                    done = pump(conn, sock, self.media)
                except SSL.Error:
                    break  # the server's alert
            if honest:
                check(done, "with the certificate it announced, our DTLS client completes the handshake")
                time.sleep(0.3)
                state = {s["id"]: s.get("state") for s in self.engine.sessions()}.get(new)
                check(state == "connected", "and the session is connected", f"{state}")
                try:
                    conn.shutdown()
                except SSL.Error:
                    pass
                flush(conn, sock, self.media)  # close_notify
                gone = self.wait_gone({new}, 5) if new is not None else None
                after = self.engine.counters()
                check(gone is not None and delta(before, after, "handshakes.closed_by_client") == 1,
                      "its close_notify ends it and frees the slot")
            else:
                gone = self.wait_gone({new}, 5) if new is not None else None
                after = self.engine.counters()
                check(not done and delta(before, after, "handshakes.failed.fingerprintMismatch") == 1,
                      "a certificate that is not the offer's fingerprint fails the handshake (counted)",
                      f"done={done}, {delta(before, after, 'handshakes.failed.fingerprintMismatch')}")
                check(gone is not None, "and its slot is back at once")
            sock.close()

    # 6. garbage on the media port
    def media_garbage(self) -> None:
        print("garbage on the media port:", flush=True)
        before = self.engine.counters()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.sources[6], 0))
        rng = random.Random(15)
        sent = 0
        for i in range(2000):
            size = rng.choice([1, 2, 12, 20, 100, 172, 1200])
            first = rng.choice([0x00, 0x01, 0x16, 0x17, 0x40, 0x80, 0x90, 0xC8, 0xFF])
            sock.sendto(bytes([first]) + rng.randbytes(size - 1), self.media)
            sent += 1
        for n in (0, 19, 20, 28):  # STUN-looking heads, cut short
            sock.sendto(b"\x00\x01" + b"\x00" * max(0, n - 2), self.media)
            sent += 1
        time.sleep(0.5)
        after = self.engine.counters()
        # Counted where each was refused: by the XDP program (drop_*, or pass_* to the kernel,
        # which has no socket on the media port) or by the worker it was redirected to (drops).
        counted = sum(delta(before, after, k) for k in after
                      if k.startswith("drop.") or (k.startswith("xdp.") and k not in
                                                      ("xdp.redirect", "xdp.pass_not_ip", "xdp.pass_not_udp")))
        check(counted >= sent, f"{sent} garbage datagrams refused and counted", f"{counted} counted")
        check(after["sessions"] == before["sessions"], "no session made or lost by garbage")
        sock.close()

    # 7. 1,000 POSTs that never connect, from many sources
    def thousand_posts(self) -> None:
        n = self.args.posts
        print(f"{n} POSTs that never connect, from {len(self.sources)} sources:", flush=True)
        before = self.engine.counters()
        ids_before = self.engine_ids()

        def one(i: int) -> int:
            return self.post_session(self.sources[i % len(self.sources)], sub=f"never-{i}")[0]

        start = time.time()
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(one, range(n)))
        took = time.time() - start
        created = codes.count(201)
        print(f"       {created} created in {took:.1f} s; others: "
              f"{ {c: codes.count(c) for c in set(codes) if c != 201} }", flush=True)
        check(created == n, f"all {n} POSTs answered 201 (the per-source limits are not what stops them)",
              f"{created}")
        held = self.engine_ids() - ids_before
        gone = self.wait_gone(held, 20)
        after = self.engine.counters()
        check(gone is not None, f"all {len(held)} slots back after the connect deadline",
              f"{len(held & self.engine_ids())} still live after 20 s")
        check(delta(before, after, "ended.connectTimeout") >= created,
              "each counted as ended by connect timeout", f"{delta(before, after, 'ended.connectTimeout')}")

    def finish(self) -> int:
        status = self.call.wait() if self.call is not None else 1
        check(status == 0, "the live call found every beep and passed", f"voxcall exit status {status}")
        if FAILURES:
            print(f"hostile: {len(FAILURES)} check(s) FAILED:", flush=True)
            for f in FAILURES:
                print(f"  - {f}", flush=True)
            return 1
        print("hostile: every attack refused and counted, every slot back, the call unharmed", flush=True)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="the sessions endpoint, https://198.18.0.1:8443/v1/sessions")
    ap.add_argument("--control", required=True, help="the engine's control socket")
    ap.add_argument("--secret-file", required=True, help="the HS256 secret the engine verifies tokens with")
    ap.add_argument("--audience", default="voxedge")
    ap.add_argument("--media-port", type=int, default=40000)
    ap.add_argument("--edge-namespace", required=True, help="the engine's namespace (for /healthz)")
    ap.add_argument("--metrics", required=True, help="the private listener, host:port inside that namespace")
    ap.add_argument("--sources", type=int, default=64, help="attack addresses 198.18.0.16 and up (on this side)")
    ap.add_argument("--flood-sources", type=int, default=8, help="sources of the flood (the first N)")
    ap.add_argument("--flood-per-source", type=int, default=40,
                    help="connections each source keeps open (past the listener's per-source cap)")
    ap.add_argument("--flood-seconds", type=float, default=12)
    ap.add_argument("--posts", type=int, default=1000)
    ap.add_argument("call", nargs=argparse.REMAINDER, help="-- then the voxcall.py command line of the live call")
    args = ap.parse_args()
    if args.call and args.call[0] == "--":
        args.call = args.call[1:]
    if not args.call:
        ap.error("give the live call's command after --")
    return Run(args).run()


if __name__ == "__main__":
    sys.exit(main())
