"""Shared pieces of the aiortc tools (voxcall.py, echo_peer.py).

Only the standard library at import time: `ensure_aiortc()` must be able to re-run the
calling script under the project's virtual environment (.build/venv, made by
scripts/install-deps) before anything imports aiortc.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_PYTHON = os.path.join(REPO, ".build", "venv", "bin", "python3")


def ensure_aiortc() -> None:
    """Re-executes the calling script with the venv's Python when aiortc is not importable."""
    try:
        import aiortc  # noqa: F401
        return
    except ImportError:
        pass
    # sys.prefix, not sys.executable: a venv's python is a symlink to the system one.
    if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(
        os.path.join(REPO, ".build", "venv")
    ):
        os.execv(VENV_PYTHON, [VENV_PYTHON] + sys.argv)
    sys.stderr.write(
        f"{os.path.basename(sys.argv[0])}: aiortc is not installed; run scripts/install-deps "
        f"(it makes {os.path.relpath(os.path.dirname(os.path.dirname(VENV_PYTHON)), os.getcwd())})\n"
    )
    sys.exit(2)


def normalize_fingerprint(text: str) -> str:
    """'sha-256 AB:CD:…', 'AB:CD:…' or 'abcd…' → 64 lower-case hex digits; ValueError otherwise."""
    t = text.strip().lower()
    for prefix in ("sha-256", "sha256"):
        if t.startswith(prefix):
            t = t[len(prefix):].lstrip(" =:")
    t = t.replace(":", "").replace(" ", "")
    if len(t) != 64 or any(c not in "0123456789abcdef" for c in t):
        raise ValueError(f"not a SHA-256 fingerprint: {text!r}")
    return t


def der_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex (the SDP style)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def restrict_host_addresses(address: str) -> None:
    """Makes aioice gather a host candidate on `address` only (instead of every interface)."""
    import aioice.ice

    def only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address]

    aioice.ice.get_host_addresses = only


def disable_consent_checks() -> None:
    """Stops aioice from sending RFC 7675 consent checks once ICE has connected.

    aioice starts `Connection.query_consent()` as a task at the end of `connect()`; it sends
    a Binding request on every nominated pair every 4–6 s and closes the connection after six
    unanswered ones. Replacing it with a coroutine that returns at once leaves a finished task,
    which `Connection.close()` skips. Nothing else in aioice sends STUN after `connect()`
    returns, except answers to checks the peer sends (an ICE-lite peer sends none).
    """
    import aioice.ice

    async def no_consent(self) -> None:  # noqa: ANN001
        return None

    aioice.ice.Connection.query_consent = no_consent


class StunLog:
    """Records every STUN message aioice sends: (monotonic time, class, method, destination)."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, str, tuple]] = []

    def install(self) -> "StunLog":
        import aioice.ice

        original = aioice.ice.StunProtocol.send_stun
        log = self

        def send_stun(protocol, message, addr):  # noqa: ANN001
            log.sent.append(
                (time.monotonic(), message.message_class.name, message.message_method.name, addr)
            )
            return original(protocol, message, addr)

        aioice.ice.StunProtocol.send_stun = send_stun
        return self

    def requests_after(self, t: float) -> int:
        return sum(1 for (ts, cls, _, _) in self.sent if ts > t and cls in ("REQUEST", "INDICATION"))

    def all_after(self, t: float) -> int:
        return sum(1 for (ts, _, _, _) in self.sent if ts > t)


class RtpLog:
    """Every RTP packet aiortc's receivers take, after SRTP: sequence number, timestamp,
    marker and the first 16 hex digits of the SHA-1 of the payload (as backend-sim logs what
    it sends), in arrival order. Wraps `RTCRtpReceiver._handle_rtp_packet`, which the DTLS
    transport calls with each packet it has unprotected."""

    def __init__(self) -> None:
        self.packets: list[dict] = []

    def install(self) -> "RtpLog":
        from aiortc.rtcrtpreceiver import RTCRtpReceiver
        original = RTCRtpReceiver._handle_rtp_packet
        log = self.packets

        async def handle(receiver, packet, arrival_time_ms):  # noqa: ANN001, ANN202
            log.append({"sequence": packet.sequence_number, "timestamp": packet.timestamp,
                        "marker": bool(packet.marker), "payload_type": packet.payload_type,
                        "payload_sha1": hashlib.sha1(packet.payload).hexdigest()[:16],
                        "arrival": time.time()})
            return await original(receiver, packet, arrival_time_ms)

        RTCRtpReceiver._handle_rtp_packet = handle
        return self
