#!/usr/bin/env python3
"""voxcall: a real WebRTC call into VoxEdge (or any WHIP-style endpoint that echoes audio).

POSTs an SDP offer (one sendrecv Opus audio m-line, every candidate gathered, no trickle)
with a bearer token, sets the answer, plays a signal of N distinct beeps, records what comes
back, finds every beep in it and reports set-up times, packets, losses and the beeps'
round-trip latency; DELETEs the session at the end. Exit status 0 only if every stage
worked and every beep came back; otherwise one line on stderr names the failed stage
(POST, ICE, DTLS, media, beeps, DELETE). See docs/demo-client.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import cmath
import fractions
import http.client
import json
import math
import os
import random
import socket
import ssl
import statistics
import sys
import time
import urllib.parse
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import voxwebrtc  # noqa: E402

RATE = 48000
FRAME = 960  # 20 ms
BEEP_SECONDS = 0.100
BEEP_AMPLITUDE = 0.5  # of full scale (−6 dBFS)
NOISE_AMPLITUDE = 0.003  # ≈ −50 dBFS: keeps the encoder busy between beeps
WINDOW = 960  # detection window: 20 ms, 50 Hz bins; beeps are 4 bins apart
HOP = 120  # 2.5 ms


class Failure(Exception):
    """A failed stage: `stage` is one of POST, ICE, DTLS, media, beeps, DELETE."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def beep_frequency(i: int, base: float, step: float) -> float:
    return base + step * i


# ---------------------------------------------------------------- signalling (HTTP/HTTPS)


class Signaling:
    """WHIP-style POST/DELETE over http.client, with the server certificate pinned by SHA-256."""

    def __init__(self, url: str, token: str | None, fingerprint: str | None, insecure: bool,
                 bind: str | None, timeout: float) -> None:
        self.url = urllib.parse.urlsplit(url)
        if self.url.scheme not in ("http", "https") or not self.url.hostname:
            raise ValueError(f"--url must be http:// or https://host[:port]/path, got {url!r}")
        self.token = token
        self.fingerprint = voxwebrtc.normalize_fingerprint(fingerprint) if fingerprint else None
        self.insecure = insecure
        self.bind = bind
        self.timeout = timeout
        self.peer_fingerprint: str | None = None

    def _connect(self, url: urllib.parse.SplitResult) -> http.client.HTTPConnection:
        source = (self.bind, 0) if self.bind else None
        if url.scheme == "http":
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=self.timeout,
                                              source_address=source)
            conn.connect()
            return conn
        if self.fingerprint or self.insecure:
            # Pinning replaces the CA chain and the name check: the engine's default
            # certificate is self-signed and printed by its SHA-256 at start.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
        conn = http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=self.timeout,
                                           source_address=source, context=ctx)
        conn.connect()
        der = conn.sock.getpeercert(binary_form=True)
        self.peer_fingerprint = voxwebrtc.der_fingerprint(der)
        if self.fingerprint and voxwebrtc.normalize_fingerprint(self.peer_fingerprint) != self.fingerprint:
            conn.close()
            raise Failure("POST", f"server certificate SHA-256 {self.peer_fingerprint} "
                                  f"is not the pinned one")
        return conn

    def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        h = {"User-Agent": "voxcall (aiortc)"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra)
        return h

    def post_offer(self, sdp: str) -> tuple[str, str]:
        """POSTs the offer; returns (answer SDP, absolute session URL)."""
        try:
            conn = self._connect(self.url)
            path = self.url.path or "/"
            if self.url.query:
                path += "?" + self.url.query
            conn.request("POST", path, body=sdp.encode(),
                         headers=self._headers({"Content-Type": "application/sdp"}))
            resp = conn.getresponse()
            body = resp.read()
            location = resp.getheader("Location")
            ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
            conn.close()
        except Failure:
            raise
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise Failure("POST", f"{self.url.geturl()}: {e.__class__.__name__}: {e}") from e
        if resp.status != 201:
            reason = body.decode(errors="replace").strip().splitlines()
            raise Failure("POST", f"HTTP {resp.status} {resp.reason}"
                                  + (f": {reason[0][:200]}" if reason else ""))
        if ctype != "application/sdp":
            raise Failure("POST", f"201 with Content-Type {ctype or 'none'}, not application/sdp")
        if not location:
            raise Failure("POST", "201 without a Location header")
        return body.decode(), urllib.parse.urljoin(self.url.geturl(), location)

    def delete(self, session_url: str) -> int:
        url = urllib.parse.urlsplit(session_url)
        try:
            conn = self._connect(url)
            conn.request("DELETE", url.path or "/", headers=self._headers({}))
            resp = conn.getresponse()
            resp.read()
            conn.close()
            return resp.status
        except Failure as f:
            raise Failure("DELETE", str(f)) from f
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise Failure("DELETE", f"{session_url}: {e.__class__.__name__}: {e}") from e


# ---------------------------------------------------------------- the signal we send


class BeepTrack:
    """An aiortc audio track: 20 ms frames of 48 kHz mono s16, low noise with N beeps.

    Beep i is 100 ms of a sine at `base + step·i` Hz starting on a frame boundary at
    `lead + i·interval` seconds after the first frame. The send time of a beep is when the
    frame that starts it left `recv()` (the sender encodes and sends it right away).
    """

    def __init__(self, beeps: int, lead: float, interval: float, base: float, step: float,
                 seed: int = 1) -> None:
        from aiortc import MediaStreamTrack

        # MediaStreamTrack's __init__ sets up the event emitter and the id; compose it.
        outer = self

        class _Track(MediaStreamTrack):
            kind = "audio"

            async def recv(self):  # noqa: ANN202
                return await outer._recv(self)

        self.track = _Track()
        self.starts = [round((lead + i * interval) * RATE / FRAME) for i in range(beeps)]
        self.freqs = [beep_frequency(i, base, step) for i in range(beeps)]
        self.by_frame = {f: i for i, f in enumerate(self.starts)}
        self.sent_at: list[float | None] = [None] * beeps
        self.frames = 0
        self.first_at: float | None = None
        self._start = 0.0
        rnd = random.Random(seed)
        n = int(NOISE_AMPLITUDE * 32767)
        self.noise = array("h", (rnd.randint(-n, n) for _ in range(RATE)))
        self.beep_len = int(BEEP_SECONDS * RATE)
        ramp = int(0.005 * RATE)  # raised-cosine edges: no clicks spraying every band
        self.envelope = [
            0.5 - 0.5 * math.cos(math.pi * min(k, self.beep_len - 1 - k, ramp) / ramp)
            if min(k, self.beep_len - 1 - k) < ramp else 1.0
            for k in range(self.beep_len)
        ]

    def end_seconds(self) -> float:
        """When the last beep ends, from the first frame."""
        return (self.starts[-1] * FRAME + self.beep_len) / RATE if self.starts else 0.0

    async def _recv(self, track):  # noqa: ANN001, ANN202
        from aiortc.mediastreams import MediaStreamError
        from av import AudioFrame

        if track.readyState != "live":
            raise MediaStreamError
        k = self.frames
        if k == 0:
            self._start = time.monotonic()
            self.first_at = self._start
        else:
            wait = self._start + k * FRAME / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self.frames += 1

        pos = (k * FRAME) % RATE
        samples = self.noise[pos:pos + FRAME]
        if len(samples) < FRAME:
            samples += self.noise[:FRAME - len(samples)]
        # A beep may span several frames: find the one that covers this frame, if any.
        j = bisect.bisect_right(self.starts, k) - 1
        if j >= 0:
            offset = (k - self.starts[j]) * FRAME  # samples into beep j
            if offset < self.beep_len:
                w = 2 * math.pi * self.freqs[j] / RATE
                a = BEEP_AMPLITUDE * 32767
                for s in range(FRAME):
                    n = offset + s
                    if n >= self.beep_len:
                        break
                    v = samples[s] + a * self.envelope[n] * math.sin(w * n)
                    samples[s] = max(-32768, min(32767, int(v)))
        if k in self.by_frame:
            self.sent_at[self.by_frame[k]] = time.monotonic()

        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = k * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


# ---------------------------------------------------------------- what comes back


class Recorder:
    """Consumes the remote track: mono samples and the arrival time of every frame."""

    def __init__(self) -> None:
        self.samples = array("h")
        self.frame_index: list[int] = []  # first sample of each frame in self.samples
        self.frame_time: list[float] = []  # its arrival (monotonic)
        self.first_at: asyncio.Future | None = None
        self.ended: str | None = None

    async def run(self, track) -> None:  # noqa: ANN001
        from aiortc.mediastreams import MediaStreamError

        loop = asyncio.get_running_loop()
        self.first_at = self.first_at or loop.create_future()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self.ended = "remote track ended"
                return
            now = time.monotonic()
            if not self.first_at.done():
                self.first_at.set_result(now)
            channels = len(frame.layout.channels)
            raw = array("h", bytes(frame.planes[0])[: frame.samples * channels * 2])
            if channels > 1:
                raw = raw[::channels]
            if frame.sample_rate != RATE:
                self.ended = f"unexpected sample rate {frame.sample_rate}"
                return
            self.frame_index.append(len(self.samples))
            self.frame_time.append(now)
            self.samples.extend(raw)

    def time_of(self, index: int) -> float:
        """Monotonic time of sample `index`: its frame's arrival plus its offset in the frame."""
        f = bisect.bisect_right(self.frame_index, index) - 1
        return self.frame_time[f] + (index - self.frame_index[f]) / RATE

    def index_at(self, t: float) -> int:
        """First sample of the first frame that arrived at or after `t`."""
        f = bisect.bisect_left(self.frame_time, t)
        return self.frame_index[f] if f < len(self.frame_index) else len(self.samples)

    def max_gap(self, until: float) -> tuple[float, float]:
        """Longest time without a frame between the first frame and `until`: (gap, at)."""
        best, at = 0.0, 0.0
        times = self.frame_time + [until]
        for a, b in zip(times, times[1:]):
            if b - a > best:
                best, at = b - a, a
        return best, at


def detect_beep(rec: Recorder, freq: float, sent: float, search: float, min_level: float):
    """Finds one beep in the recording, after its send time.

    Sliding 20 ms DFT at `freq` (prefix sums of x·e^{-jωn}, one pass per beep) over the
    audio that arrived within `search` seconds after `sent`. The beep is there if its tone
    peaks at ≥ `min_level` of the sent amplitude and dominates its window (tone power over
    total power ≥ 0.5, so broadband noise or a click cannot pass). Its onset is the centre of
    the first window reaching half the peak. Returns (latency s, level dB re sent, purity)
    or None.
    """
    lo = rec.index_at(sent - 0.020)
    hi = rec.index_at(sent + search)
    x = rec.samples[lo:hi]
    if len(x) < WINDOW:
        return None
    rot = cmath.exp(-2j * math.pi * freq / RATE)
    z = complex(1.0, 0.0)
    pre = [0j] * (len(x) + 1)
    sq = [0.0] * (len(x) + 1)
    acc, acc2 = 0j, 0.0
    for n, v in enumerate(x):
        acc += v * z
        acc2 += v * v
        pre[n + 1] = acc
        sq[n + 1] = acc2
        z *= rot
        if n & 1023 == 1023:
            z /= abs(z)  # keep the phasor on the unit circle
    amps = []
    for a in range(0, len(x) - WINDOW + 1, HOP):
        amps.append(2 * abs(pre[a + WINDOW] - pre[a]) / WINDOW)
    peak_i = max(range(len(amps)), key=amps.__getitem__)
    peak = amps[peak_i]
    sent_amp = BEEP_AMPLITUDE * 32767
    if peak < min_level * sent_amp:
        return None
    a = peak_i * HOP
    energy = sq[a + WINDOW] - sq[a]
    purity = (peak * peak / 2 * WINDOW) / energy if energy > 0 else 0.0
    if purity < 0.5:
        return None
    onset_i = next(i for i, v in enumerate(amps) if v >= peak / 2)
    onset = lo + onset_i * HOP + WINDOW // 2
    return rec.time_of(onset) - sent, 20 * math.log10(peak / sent_amp), purity


# ---------------------------------------------------------------- the call


def stats_dict(report) -> dict:  # noqa: ANN001
    out: dict[str, list] = {}
    for s in report.values():
        d = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(s).items()}
        out.setdefault(d.get("type", "?"), []).append(d)
    return out


async def call(args, result: dict) -> None:  # noqa: ANN001, C901
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.rtcrtpsender import RTCRtpSender

    stun = voxwebrtc.StunLog().install()
    rtp_log = voxwebrtc.RtpLog().install() if args.record_rtp else None
    if args.bind:
        voxwebrtc.restrict_host_addresses(args.bind)
    if args.no_consent:
        voxwebrtc.disable_consent_checks()

    sig = Signaling(args.url, args.token, args.fingerprint, args.insecure, args.bind,
                    args.http_timeout)
    source = BeepTrack(args.beeps, args.lead, args.beep_interval, args.base_freq, args.freq_step)
    rec = Recorder()
    loop = asyncio.get_running_loop()
    rec.first_at = loop.create_future()
    marks: dict[str, float] = {}
    ice_done: asyncio.Future = loop.create_future()
    dtls_done: asyncio.Future = loop.create_future()
    for fut in (ice_done, dtls_done):  # a failure after the call is over is nobody's to read
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    # No iceServers: aiortc's default asks a public STUN server; we gather host candidates only.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tasks: list[asyncio.Task] = []
    session_url: str | None = None
    try:
        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            st = pc.iceConnectionState
            if st in ("completed", "connected") and not ice_done.done():
                marks["ice"] = time.monotonic()
                ice_done.set_result(True)
            elif st == "failed" and not ice_done.done():
                ice_done.set_exception(Failure("ICE", "ICE failed: no candidate pair answered"))

        @pc.on("connectionstatechange")
        def _conn() -> None:
            st = pc.connectionState
            if st == "connected" and not dtls_done.done():
                marks["dtls"] = time.monotonic()
                dtls_done.set_result(True)
            elif st in ("failed", "closed") and not dtls_done.done():
                stage = "DTLS" if ice_done.done() and ice_done.exception() is None else "ICE"
                dtls_done.set_exception(Failure(stage, f"connection {st}"))

        @pc.on("track")
        def _track(track) -> None:  # noqa: ANN001
            if track.kind == "audio":
                tasks.append(asyncio.ensure_future(rec.run(track)))

        marks["start"] = time.monotonic()
        tr = pc.addTransceiver(source.track, direction="sendrecv")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs
                if c.mimeType.lower() == "audio/opus"]
        tr.setCodecPreferences(opus)
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # aiortc gathers every candidate here: no trickle
        marks["offer"] = time.monotonic()
        if "a=candidate" not in pc.localDescription.sdp:
            raise Failure("ICE", "no local ICE candidate (loopback-only host? aiortc skips "
                                 "127.0.0.1; use an interface with an address, see --bind)")

        marks["post"] = time.monotonic()
        answer, session_url = await loop.run_in_executor(None, sig.post_offer,
                                                         pc.localDescription.sdp)
        marks["answer"] = time.monotonic()
        result["session"] = session_url
        result["server_fingerprint"] = sig.peer_fingerprint
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except Exception as e:  # aiortc raises ValueError and others for bad SDP
            raise Failure("POST", f"answer refused by aiortc: {e}") from e

        deadline = marks["post"] + args.connect_timeout
        try:
            await asyncio.wait_for(asyncio.shield(ice_done), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise Failure("ICE", f"not connected {args.connect_timeout:g} s after the POST "
                                 f"(state {pc.iceConnectionState})") from None
        try:
            await asyncio.wait_for(asyncio.shield(dtls_done), max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise Failure("DTLS", f"no DTLS connection {args.connect_timeout:g} s after the "
                                  f"POST (state {pc.connectionState})") from None
        try:
            await asyncio.wait_for(asyncio.shield(rec.first_at), args.media_timeout)
        except asyncio.TimeoutError:
            raise Failure("media", f"no audio back within {args.media_timeout:g} s of the "
                                   f"DTLS connection") from None
        marks["audio"] = rec.first_at.result()

        # Hold the call: every beep sent, then `tail` seconds for the last one to come back.
        end = marks["dtls"] + args.duration
        while time.monotonic() < end:
            await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))
            if pc.connectionState in ("failed", "closed"):
                raise Failure("media", f"connection {pc.connectionState} "
                                       f"{time.monotonic() - marks['dtls']:.1f} s into the call")
        marks["end"] = time.monotonic()
        result["stats"] = stats_dict(await pc.getStats())
    finally:
        result["setup_ms"] = setup_times(marks)
        result["stun_sent"] = {
            "total": len(stun.sent),
            "after_ice_connected": stun.all_after(marks["ice"]) if "ice" in marks else None,
            "requests_after_ice_connected":
                stun.requests_after(marks["ice"]) if "ice" in marks else None,
        }
        if "ice" in marks:
            result["ice_connected_unix"] = time.time() - (time.monotonic() - marks["ice"])
        if session_url and args.control:
            # Before the DELETE: the engine's view of this call (barge-in reads its flushes).
            result["session_show"] = await loop.run_in_executor(None, engine_view, args.control, args.token)
        if rtp_log is not None:
            with open(args.record_rtp, "w") as f:
                for p in rtp_log.packets:
                    f.write(json.dumps(p) + "\n")
            result["rtp_recorded"] = len(rtp_log.packets)
        if session_url:
            try:
                status = await loop.run_in_executor(None, sig.delete, session_url)
                result["delete_status"] = status
            except Failure as f:
                result["delete_status"] = None
                result.setdefault("delete_error", str(f))
        for t in tasks:
            t.cancel()
        await pc.close()

    # Media and beeps: judged after the call, from the recording.
    result["frames_sent"] = source.frames
    result["frames_received"] = len(rec.frame_time)
    gap, gap_at = rec.max_gap(marks["end"])
    result["max_gap_ms"] = round(gap * 1000, 1)
    if gap > args.max_gap and not args.no_echo:
        raise Failure("media", f"no audio for {gap:.2f} s from {gap_at - marks['dtls']:.1f} s "
                               f"into the call")
    beeps = []
    for i, (freq, sent) in enumerate(zip(source.freqs, source.sent_at)):
        b = {"beep": i + 1, "freq_hz": freq, "found": False}
        if sent is not None:
            b["sent_s"] = round(sent - marks["dtls"], 3)
            found = detect_beep(rec, freq, sent, args.search, args.min_level)
            if found:
                latency, level, purity = found
                b.update(found=True, rtt_ms=round(latency * 1000, 1), level_db=round(level, 1),
                         purity=round(purity, 2))
        beeps.append(b)
    result["beeps"] = beeps
    rtts = [b["rtt_ms"] for b in beeps if b["found"]]
    if rtts:
        result["beep_rtt_ms"] = {"min": min(rtts), "median": statistics.median(rtts),
                                 "max": max(rtts)}
    missing = [b["beep"] for b in beeps if not b["found"]]
    if missing and not args.no_echo:
        raise Failure("beeps", f"{len(missing)} of {len(beeps)} beeps missing in the echo: "
                               f"{', '.join(map(str, missing))}")
    if result.get("delete_status") != 204:
        raise Failure("DELETE", result.get("delete_error")
                      or f"DELETE {session_url} answered {result.get('delete_status')}, not 204")


def engine_view(control: str, token: str | None) -> dict:
    """`session.show` of this call over the engine's control socket: the live WebRTC session
    whose subject is the token's (its claims read, not verified), or {"error": …}."""
    from edgeclient import Engine
    try:
        body = (token or "").split(".")[1]
        subject = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["sub"]
        engine = Engine(control)
        mine = [x for x in engine.sessions() if x.get("subject") == subject and x.get("kind", "webrtc") == "webrtc"]
        if len(mine) != 1:
            return {"error": f"{len(mine)} live sessions of subject {subject!r}"}
        return engine.call("session.show", session=mine[0]["id"]).get("session") or {"error": "no session"}
    except Exception as e:  # noqa: BLE001  (reported, not fatal: the call itself is judged apart)
        return {"error": str(e)}


def setup_times(m: dict[str, float]) -> dict[str, float]:
    def ms(a: str, b: str):  # noqa: ANN202
        return round((m[b] - m[a]) * 1000, 1) if a in m and b in m else None

    return {"offer_and_gather": ms("start", "offer"),
            "post_to_answer": ms("post", "answer"), "answer_to_ice": ms("answer", "ice"),
            "ice_to_dtls": ms("ice", "dtls"), "dtls_to_first_audio": ms("dtls", "audio"),
            "post_to_first_audio": ms("post", "audio")}


def packet_summary(stats: dict) -> dict:
    out = {}
    for s in stats.get("outbound-rtp", []):
        out["packets_sent"] = s.get("packetsSent")
    for s in stats.get("inbound-rtp", []):
        out["packets_received"] = s.get("packetsReceived")
        out["packets_lost"] = s.get("packetsLost")
        out["jitter_ms"] = round(s.get("jitter", 0) / RATE * 1000, 1)  # RTP clock units
    for s in stats.get("remote-inbound-rtp", []):
        out["peer_reported_lost"] = s.get("packetsLost")
        out["rtcp_rtt_ms"] = round(s["roundTripTime"] * 1000, 1) if s.get("roundTripTime") else None
    return out


def print_human(result: dict) -> None:
    p = print
    if result.get("session"):
        p(f"session      {result['session']}")
    if result.get("server_fingerprint"):
        p(f"server cert  sha-256 {result['server_fingerprint']}")
    s = result.get("setup_ms", {})

    def f(v):  # noqa: ANN001, ANN202
        return "-" if v is None else f"{v:.1f} ms"

    p(f"set-up       POST→answer {f(s.get('post_to_answer'))}, answer→ICE "
      f"{f(s.get('answer_to_ice'))}, ICE→DTLS {f(s.get('ice_to_dtls'))}, DTLS→first audio "
      f"{f(s.get('dtls_to_first_audio'))} (POST→first audio {f(s.get('post_to_first_audio'))})")
    pk = result.get("packets", {})
    if pk:
        p(f"packets      sent {pk.get('packets_sent')}, received {pk.get('packets_received')}, "
          f"lost {pk.get('packets_lost')} (peer reports {pk.get('peer_reported_lost')} lost), "
          f"jitter {pk.get('jitter_ms')} ms, RTCP RTT "
          + ("-" if pk.get("rtcp_rtt_ms") is None else f"{pk['rtcp_rtt_ms']} ms"))
    if "max_gap_ms" in result:
        p(f"audio        {result['frames_sent']} frames sent, {result['frames_received']} "
          f"received, longest gap {result['max_gap_ms']} ms")
    st = result.get("stun_sent", {})
    if st.get("requests_after_ice_connected") is not None:
        p(f"stun         {st['total']} messages sent, {st['requests_after_ice_connected']} "
          f"requests after ICE connected"
          + (" (consent checks off)" if result.get("no_consent") else ""))
    for b in result.get("beeps", []):
        if b["found"]:
            p(f"beep {b['beep']:>3}     {b['freq_hz']:>6.0f} Hz  found  rtt {b['rtt_ms']:7.1f} ms"
              f"  level {b['level_db']:+5.1f} dB")
        else:
            p(f"beep {b['beep']:>3}     {b['freq_hz']:>6.0f} Hz  MISSING")
    r = result.get("beep_rtt_ms")
    if r:
        found = sum(b["found"] for b in result["beeps"])
        p(f"beeps        {found}/{len(result['beeps'])} found, rtt min {r['min']:.1f} / median "
          f"{r['median']:.1f} / max {r['max']:.1f} ms")
    if "rtp_recorded" in result:
        p(f"rtp          {result['rtp_recorded']} packets recorded")
    sh = result.get("session_show")
    if sh:
        p("engine view  " + (f"session {sh.get('id')} slot {sh.get('slot')}, backend_protocol "
                              f"{json.dumps(sh.get('backend_protocol'))}" if "error" not in sh else sh["error"]))
    if "delete_status" in result:
        p(f"DELETE       {result['delete_status']}")
    p("OK" if result.get("ok") else f"FAILED at {result.get('failed_stage')}: {result.get('error')}")


class _Help(argparse.HelpFormatter):
    """Appends a flag's default to its help when it has a value worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in h:
            h += " (default: %(default)s)"
        return h


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="voxcall", description=__doc__.split("\n\n")[0], formatter_class=_Help)
    ap.add_argument("--url", required=True, help="the sessions endpoint, e.g. "
                    "https://198.18.0.1:8443/v1/sessions")
    ap.add_argument("--token", help="bearer token (JWT); or $VOXCALL_TOKEN",
                    default=os.environ.get("VOXCALL_TOKEN"))
    tls = ap.add_mutually_exclusive_group()
    tls.add_argument("--fingerprint", help="pin the server certificate by its SHA-256 (hex, "
                     "colons optional; the engine prints it at start)")
    tls.add_argument("--insecure", action="store_true", help="accept any server certificate")
    ap.add_argument("--beeps", type=int, default=8, help="number of beeps (0..40)")
    ap.add_argument("--beep-interval", type=float, default=0.5, help="seconds between beeps")
    ap.add_argument("--lead", type=float, default=1.0,
                    help="seconds of low noise before the first beep")
    ap.add_argument("--base-freq", type=float, default=600.0, help="first beep's frequency, Hz")
    ap.add_argument("--freq-step", type=float, default=200.0,
                    help="frequency step between beeps, Hz (≥ 150: 20 ms windows tell them apart)")
    ap.add_argument("--duration", type=float, help="seconds to hold the call after DTLS "
                    "connects (default: until the last beep plus --search)")
    ap.add_argument("--search", type=float, default=1.5,
                    help="seconds after its send time to look for a beep's echo")
    ap.add_argument("--min-level", type=float, default=0.25,
                    help="a beep counts if its echo reaches this fraction of the sent amplitude")
    ap.add_argument("--max-gap", type=float, default=1.0,
                    help="fail (media) if no audio arrives for this many seconds mid-call")
    ap.add_argument("--connect-timeout", type=float, default=10.0,
                    help="seconds from the POST to ICE and DTLS connected")
    ap.add_argument("--media-timeout", type=float, default=5.0,
                    help="seconds from DTLS connected to the first audio back")
    ap.add_argument("--http-timeout", type=float, default=10.0, help="seconds for each HTTP exchange")
    ap.add_argument("--no-consent", action="store_true", help="send no ICE consent checks "
                    "(RFC 7675) after connecting: media only, like libnice's clients")
    ap.add_argument("--bind", help="local address for ICE and HTTP (default: every non-loopback "
                    "address)")
    ap.add_argument("--no-echo", action="store_true", help="the backend talks instead of echoing: "
                    "beeps and gaps in what comes back are not judged (barge-in)")
    ap.add_argument("--record-rtp", metavar="FILE", help="write every RTP packet received (after SRTP) "
                    "to FILE, one JSON object a line: sequence, timestamp, marker, payload_sha1")
    ap.add_argument("--control", metavar="SOCKET", help="the engine's control socket: before the "
                    "DELETE, put its session.show of this call in the report (session_show)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON object to FILE")
    ap.add_argument("--verbose", action="store_true", help="aiortc/aioice debug logs on stderr")
    a = ap.parse_args(argv)
    if not 0 <= a.beeps <= 40:
        ap.error("--beeps must be 0..40")
    if a.freq_step < 150 or a.base_freq < 200 or a.base_freq + a.freq_step * max(0, a.beeps - 1) > 16000:
        ap.error("beep frequencies must lie in 200..16000 Hz, at least 150 Hz apart")
    if a.beep_interval < 0.2:
        ap.error("--beep-interval must be ≥ 0.2 s (a beep is 100 ms long)")
    u = urllib.parse.urlsplit(a.url)
    if u.scheme not in ("http", "https") or not u.hostname:
        ap.error(f"--url must be http:// or https://host[:port]/path, got {a.url!r}")
    try:
        u.port
    except ValueError as e:
        ap.error(f"--url: {e}")
    if a.fingerprint:
        try:
            voxwebrtc.normalize_fingerprint(a.fingerprint)
        except ValueError as e:
            ap.error(f"--fingerprint: {e}")
    if a.bind:
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in a.bind else socket.AF_INET, a.bind)
        except OSError:
            ap.error(f"--bind: not an IP address: {a.bind}")
    needed = (a.lead + max(0, a.beeps - 1) * a.beep_interval + BEEP_SECONDS + a.search
              if a.beeps else a.lead + 1.0)
    if a.duration is None:
        a.duration = round(needed, 2)
    elif a.duration < needed:
        ap.error(f"--duration {a.duration:g} s is too short for {a.beeps} beeps: needs "
                 f"≥ {needed:.2f} s (lead + beeps + --search)")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    voxwebrtc.ensure_aiortc()
    if args.verbose:
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(message)s")
    result: dict = {"url": args.url, "beeps_requested": args.beeps, "duration_s": args.duration,
                    "no_consent": args.no_consent}
    try:
        asyncio.run(call(args, result))
        result["ok"] = True
    except Failure as f:
        result.update(ok=False, failed_stage=f.stage, error=str(f))
    except KeyboardInterrupt:
        result.update(ok=False, failed_stage="interrupted", error="interrupted")
    result["packets"] = packet_summary(result.get("stats", {}))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if args.json:
        print(json.dumps(result, indent=None if not sys.stdout.isatty() else 2))
    else:
        print_human(result)
    if not result["ok"]:
        sys.stderr.write(f"voxcall: {result['failed_stage']} failed: {result['error']}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
