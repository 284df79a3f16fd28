#!/usr/bin/env python3
"""Barge-in end to end (issue 16), run by `voxedge demo --barge-in` in the demo's far namespace.

The backend (`voxedge backend-sim --mode tone`, its JSON-lines log in --backend-log) sends
3 s of speech ahead of real time in bursts, flushes after 1 s of playout and answers with
1 s of another tone. This script runs the aiortc call (voxcall.py, the command after `--`,
recording every RTP packet it receives and the engine's `session.show` before its DELETE),
and beside it:

- two spoofed flushes to the call's backend leg (the edge's address, port base + slot): one
  from another address with a bad MAC, one from the backend's address but another port with
  a good MAC, both before the backend's own flush; the engine's counters read around them;
- a second session whose client answers one ICE check and never does DTLS: the backend must
  get its start and, about 10 s after the offer, its end with `connect_timeout`.

Then it prints one line per property and `barge-in: passed` (exit 0) or `barge-in: FAIL …`
(exit 1). Every check compares what the client received (payload hashes, sequence numbers)
with what the backend logged it sent, around the sequence number the engine says it last
sent before the flush.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edgeclient import (  # noqa: E402
    Engine, Signaling, Tokens, answer_fields, delta, ice_connect, offer, random_ice, urllib_parse,
)

FAILURES: list[str] = []


def report(ok: bool, name: str, text: str) -> None:
    """One property's line: `ok   name: text` or `FAIL name: text`."""
    print(f"  {'ok  ' if ok else 'FAIL'} {name}: {text}", flush=True)
    if not ok:
        FAILURES.append(name)


def key_bytes(path: str) -> bytes:
    """The shared key as the engine and backend-sim read it: trailing whitespace trimmed."""
    return open(path, "rb").read().rstrip(b" \t\r\n")


def flush_message(key: bytes, session: int, sequence: int, bad_mac: bool = False) -> bytes:
    """A flush from the backend (docs/backend-protocol.md, "Layout"): 32-byte header, no body,
    HMAC-SHA1's first 16 bytes."""
    header = struct.pack("!BBBBHHQQQ", 0x0B, 1, 3, 1, 0, 0, session, sequence, time.monotonic_ns())
    mac = hmac.new(key, header, hashlib.sha1).digest()[:16]
    if bad_mac:
        mac = bytes([mac[0] ^ 0x80]) + mac[1:]
    return header + mac


class BackendLog:
    """backend-sim's JSON lines, re-read on demand (it flushes each line)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def events(self, name: str | None = None, session: int | None = None) -> list[dict]:
        out = []
        try:
            lines = open(self.path).read().splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line being written
            if (name is None or e.get("event") == name) and (session is None or e.get("session") == session):
                out.append(e)
        return out

    def wait(self, name: str, session: int, seconds: float) -> dict | None:
        deadline = time.monotonic() + seconds
        while True:
            found = self.events(name, session)
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(0.05)


class SilentClient(threading.Thread):
    """A session whose client answers one ICE check and then never does DTLS."""

    def __init__(self, run: "Run") -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.subject = f"silent-{os.getpid()}"
        self.session: int | None = None
        self.error = ""
        self.checked = False
        self.posted_at = 0.0
        self.start_line: dict | None = None
        self.end_line: dict | None = None
        self.end_after = 0.0

    def run(self) -> None:
        r = self.run_
        ufrag, pwd = random_ice()
        token = r.tokens.mint(self.subject, model="silent-model")
        self.posted_at = time.monotonic()
        status, headers, body = r.http.post(token, offer(ufrag, pwd, "00:" * 31 + "00"), r.args.caller)
        if status != 201:
            self.error = f"POST answered {status}: {body[:80]!r}"
            return
        answer = answer_fields(body.decode(errors="replace"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((r.args.caller, 0))
        sock.settimeout(0.5)
        self.checked = ice_connect(sock, (answer["address"], int(answer["port"])), answer, ufrag)
        self.session = next((s["id"] for s in r.engine.sessions() if s.get("subject") == self.subject), None)
        if self.session is None:
            self.error = "no live session of its subject after the check"
            sock.close()
            return
        self.start_line = r.log.wait("start", self.session, 5)
        self.end_line = r.log.wait("end", self.session, 20)
        self.end_after = time.monotonic() - self.posted_at
        sock.close()  # held open until the end: the 5-tuple stays, it only never speaks DTLS


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = Engine(args.control)
        self.tokens = Tokens(open(args.secret_file, "rb").read().rstrip(b"\n"), args.audience)
        self.http = Signaling(args.url)
        self.log = BackendLog(args.backend_log)
        self.key = key_bytes(args.key_file)
        self.edge_host = urllib_parse(args.url)[0]
        self.backend_host, backend_port = args.backend.rsplit(":", 1)
        self.backend_port = int(backend_port)

    def call_session(self, seconds: float) -> dict | None:
        """The call's session (by its token's subject) once it is connected, from session.list."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for s in self.engine.sessions():
                if s.get("subject") == self.args.subject and s.get("state") == "connected":
                    return s
            time.sleep(0.05)
        return None

    def spoof(self, session: dict) -> dict:
        """The two spoofed flushes, the engine's counters and the session's flushes around them."""
        show = self.engine.show(session["id"])
        target = (self.edge_host, self.args.backend_port_base + int(show["slot"]))
        before = self.engine.counters()
        flushes_before = show.get("backend_protocol", {}).get("flushes")
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind((self.args.spoof_source, 0))
        stranger.sendto(flush_message(self.key, session["id"], 1_000_000, bad_mac=True), target)
        # The backend's own address, another port, and a MAC that verifies: only the source is wrong.
        neighbour = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        neighbour.bind((self.backend_host, self.backend_port + 1))
        neighbour.sendto(flush_message(self.key, session["id"], 1_000_001), target)
        time.sleep(0.3)
        after = self.engine.counters()
        stranger.close()
        neighbour.close()
        return {"target": target, "before": before, "after": after, "flushes_before": flushes_before}

    def run(self) -> int:
        silent = SilentClient(self)
        silent.start()
        out = f"{self.args.work}.rtp.jsonl"
        report_path = f"{self.args.work}.call.json"
        call = subprocess.Popen(self.args.call + ["--no-echo", "--record-rtp", out, "--control", self.args.control,
                                                  "--json-out", report_path])
        session = self.call_session(15)
        spoofed = self.spoof(session) if session else None
        status = call.wait()
        silent.join(30)
        try:
            result = json.load(open(report_path))
        except (OSError, ValueError):
            result = {}
        received = [json.loads(line) for line in open(out)] if os.path.exists(out) else []
        print(f"barge-in: the call exited {status}; {len(received)} RTP packets recorded by the client", flush=True)
        if session is None:
            report(False, "call", "no connected session of the call's subject within 15 s")
            return self.finish()
        sid = session["id"]
        self.check_audio(sid, result.get("session_show") or {}, received)
        self.check_spoofs(spoofed, result.get("session_show") or {})
        self.check_start_and_end(sid)
        self.check_connect_timeout(silent)
        if status != 0:
            report(False, "call", f"voxcall exited {status}")
        return self.finish()

    # --- the properties ----------------------------------------------------------------------

    def check_audio(self, sid: int, show: dict, received: list[dict]) -> None:
        bp = show.get("backend_protocol") or {}
        sent = self.log.events("packet", sid)
        before = [p["payload_sha1"] for p in sent if p["phase"] == "before_flush"]
        after = [p["payload_sha1"] for p in sent if p["phase"] == "after_flush"]
        flush = self.log.events("flush", sid)
        print(f"barge-in: the backend sent {len(before)} packets before its flush, {len(after)} after; "
              f"session.show: flushes {bp.get('flushes')}, last_flush_sequence {bp.get('last_flush_sequence')}, "
              f"pacing_queued {bp.get('pacing_queued')}", flush=True)
        last = bp.get("last_flush_sequence")
        if not received or last is None or not flush or not before or not after:
            report(False, "first second", f"nothing to judge: {len(received)} packets received, "
                                           f"last_flush_sequence {last}, {len(flush)} flush lines, "
                                           f"{len(before)}/{len(after)} packets sent before/after")
            report(False, "nothing queued after the flush", "not judged")
            report(False, "after the flush", "not judged")
            return
        # Sequence numbers extended from the first packet's (16 bits wrap).
        first = received[0]["sequence"]

        def ext(seq: int) -> int:
            return first + ((seq - first + 0x8000) % 0x10000) - 0x8000

        by_seq: dict[int, str] = {}
        for p in received:
            by_seq.setdefault(ext(p["sequence"]), p["payload_sha1"])
        lo, end = min(by_seq), ext(last)
        # 1. From the first packet up to last_flush_sequence: every one, the backend's pre-flush
        # audio in its order.
        span = list(range(lo, end + 1))
        missing = [s for s in span if s not in by_seq]
        got = [by_seq[s] for s in span if s in by_seq]
        k0 = before.index(got[0]) if got and got[0] in before else -1
        in_order = not missing and k0 >= 0 and got == before[k0:k0 + len(got)]
        n = len(span)
        report(in_order and 40 <= n <= 60, "first second",
               f"client-leg sequence {lo % 65536}…{last} ({n} packets, {n * 20} ms): "
               + (f"all received, the backend's pre-flush packets {k0 + 1}–{k0 + n} in its order"
                  if in_order else f"missing {len(missing)} {missing[:5]}, first matches pre-flush packet "
                                   f"{k0 + 1 if k0 >= 0 else None}, in order {in_order}")
               + f"; {len(set(before) - set(by_seq.values()))} pre-flush packets never reached the client")
        # 2. Nothing after last_flush_sequence is audio sent before the flush.
        later = [(s, h) for s, h in sorted(by_seq.items()) if s > end]
        stale = [s % 65536 for s, h in later if h in set(before)]
        report(not stale and bool(later), "nothing queued after the flush",
               f"{len(later)} packets after sequence {last}, {len(stale)} of them pre-flush audio"
               + (f" (sequences {stale[:5]})" if stale else ""))
        # 3. The after-flush audio: all of it, in order, continuing at last_flush_sequence + 1.
        want = list(range(end + 1, end + 1 + len(after)))
        got_after = [by_seq.get(s) for s in want]
        report(got_after == after, "after the flush",
               f"{sum(h in set(after) for h in got_after)} of the {len(after)} packets sent after the flush, "
               f"sequence {(end + 1) % 65536}…{(end + len(after)) % 65536}"
               + (", in order, none missing" if got_after == after else
                  f"; first wrong at {(end + 1 + next(i for i, (a, b) in enumerate(zip(got_after, after)) if a != b)) % 65536}"))

    def check_spoofs(self, spoofed: dict | None, show: dict) -> None:
        flushes = (show.get("backend_protocol") or {}).get("flushes")
        if spoofed is None:
            report(False, "spoofed flushes", "not sent (no session)")
            return
        b, a = spoofed["before"], spoofed["after"]
        wrong_source = delta(b, a, "drop.wrongSource")
        xdp_unadmitted = delta(b, a, "xdp.drop_unadmitted")
        refusals = {k[len("backend.messages."):]: delta(b, a, k) for k in a
                    if k.startswith("backend.messages.") and k != "backend.messages.ok" and delta(b, a, k)}
        # On AF_XDP the program drops a 5-tuple it never admitted before the worker sees it;
        # on kernel sockets the worker checks the source before computing any MAC.
        refused = wrong_source + xdp_unadmitted
        host, port = spoofed["target"]
        report(flushes == 1 and spoofed["flushes_before"] == 0 and refused == 2 and not refusals,
               "spoofed flushes",
               f"2 sent to {host}:{port} before the backend's flush (flushes then {spoofed['flushes_before']}); "
               f"flushes now {flushes}; refused as wrongSource +{wrong_source}, XDP drop_unadmitted "
               f"+{xdp_unadmitted}; backend_protocol.messages verdicts other than ok "
               + (f"{refusals}" if refusals else "+0 (never reached the MAC)"))

    def check_start_and_end(self, sid: int) -> None:
        start = self.log.wait("start", sid, 1)
        model, subject = (start or {}).get("model"), (start or {}).get("subject")
        report(model == self.args.model and subject == self.args.subject, "start",
               f"session {sid}: model {model!r}, subject {subject!r} (the token's: {self.args.model!r}, "
               f"{self.args.subject!r})")
        end = self.log.wait("end", sid, 5)
        reason = (end or {}).get("reason")
        report(reason == "client_left" and (end or {}).get("by") == "edge", "end",
               f"session {sid}: {reason} after the DELETE" if end else f"session {sid}: no end in 5 s")

    def check_connect_timeout(self, silent: SilentClient) -> None:
        if silent.error or silent.session is None:
            report(False, "connect deadline", silent.error or "the silent session never started")
            return
        events = self.log.events(session=silent.session)
        order = [e["event"] for e in events if e["event"] in ("start", "end")]
        reason = (silent.end_line or {}).get("reason")
        ok = (silent.checked and order == ["start", "end"] and reason == "connect_timeout"
              and 9 <= silent.end_after <= 15)
        report(ok, "connect deadline",
               f"session {silent.session}: check answered {silent.checked}, no DTLS; backend-sim saw "
               f"{' then '.join(order) or 'nothing'}, end {reason} {silent.end_after:.1f} s after the POST")

    def finish(self) -> int:
        if FAILURES:
            print(f"barge-in: FAIL {', '.join(FAILURES)}", flush=True)
            return 1
        print("barge-in: passed", flush=True)
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="the sessions endpoint, https://198.18.0.1:8443/v1/sessions")
    ap.add_argument("--control", required=True, help="the engine's control socket")
    ap.add_argument("--secret-file", required=True, help="the HS256 secret the engine verifies tokens with")
    ap.add_argument("--audience", default="voxedge")
    ap.add_argument("--key-file", required=True, help="the backend's shared key (for the good-MAC spoof)")
    ap.add_argument("--backend-log", required=True, help="backend-sim's JSON-lines log")
    ap.add_argument("--backend", required=True, help="backend-sim's ip:port")
    ap.add_argument("--backend-port-base", type=int, default=20000)
    ap.add_argument("--caller", required=True, help="this side's address for the silent client")
    ap.add_argument("--spoof-source", required=True, help="another address on this side")
    ap.add_argument("--model", required=True, help="the model claim of the call's token")
    ap.add_argument("--subject", required=True, help="the subject claim of the call's token")
    ap.add_argument("--work", required=True, help="prefix of the files written (RTP record, call report)")
    ap.add_argument("call", nargs=argparse.REMAINDER, help="-- then the voxcall.py command line of the call")
    args = ap.parse_args()
    if args.call and args.call[0] == "--":
        args.call = args.call[1:]
    if not args.call:
        ap.error("give the call's command after --")
    return Run(args).run()


if __name__ == "__main__":
    sys.exit(main())
