#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (docs/reliability.md) into this directory:
real clients' datagrams and offers from ../webrtc, and small generated inputs, framed as
each target reads its input (Sources/VoxFuzz). Run from anywhere; it rewrites `seed-*`
files only, never the inputs the fuzzer added."""
import hashlib, hmac, json, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
WEBRTC = os.path.join(HERE, "..", "webrtc")
CLIENTS = ["chromium-156", "aiortc-1.16", "gstreamer-1.22"]


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def pcap_frames(path):
    data = open(path, "rb").read()
    off, out = 24, []
    while off + 16 <= len(data):
        captured = struct.unpack_from("<I", data, off + 8)[0]
        out.append(data[off + 16 : off + 16 + captured])
        off += 16 + captured
    return out


def udp_payload(frame):
    ihl = (frame[14] & 0x0F) * 4
    return frame[14 + ihl + 8 :]


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_frame(payload, vlan=None, options=b""):
    udp = struct.pack("!HHHH", 50000, 40000, 8 + len(payload), 0) + payload
    ihl = 5 + len(options) // 4
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(udp), 1, 0x4000, 64, 17, 0,
                     bytes([198, 18, 0, 2]), bytes([198, 18, 0, 1])) + options
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    eth = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + b"\x08\x00" + ip + udp


def ipv6_frame(payload, hop_by_hop=False):
    udp = struct.pack("!HHHH", 50000, 40000, 8 + len(payload), 0) + payload
    ext, nxt = b"", 17
    if hop_by_hop:
        ext, nxt = bytes([17, 0, 1, 4, 0, 0, 0, 0]), 0
    src = bytes.fromhex("20010db8000000000000000000000002")
    dst = bytes.fromhex("20010db8000000000000000000000001")
    ip = struct.pack("!IHBB", 0x60000000, len(ext) + len(udp), nxt, 64) + src + dst + ext
    return b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x86\xdd" + ip + udp


def stun_check(username, password, use_candidate=False, tid=b"\x01" * 12):
    attrs = b""
    def attr(t, v):
        return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)
    attrs += attr(0x0006, username)
    attrs += attr(0x0024, struct.pack("!I", 0x6E001EFF))
    attrs += attr(0x802A, struct.pack("!Q", 0x1234))
    if use_candidate:
        attrs += attr(0x0025, b"")
    head = lambda extra: struct.pack("!HHI", 0x0001, len(attrs) + extra, 0x2112A442) + tid
    mi = hmac.new(password, head(24) + attrs, hashlib.sha1).digest()
    attrs += attr(0x0008, mi)
    msg = head(8) + attrs
    fp = (zlib.crc32(msg) ^ 0x5354554E) & 0xFFFFFFFF
    return msg + attr(0x8028, struct.pack("!I", fp))


def rtp(seq, ssrc=0x11223344, payload=b"\x78" * 20, ext=None, csrc=(), padding=0, pt=111, ts=160):
    b0 = 0x80 | (0x10 if ext else 0) | (0x20 if padding else 0) | len(csrc)
    out = struct.pack("!BBHII", b0, pt, seq, ts, ssrc) + b"".join(struct.pack("!I", c) for c in csrc)
    if ext:
        profile, body = ext
        body += b"\0" * (-len(body) % 4)
        out += struct.pack("!HH", profile, len(body) // 4) + body
    out += payload
    if padding:
        out += b"\0" * (padding - 1) + bytes([padding])
    return out


def rtcp(pt, count, body, padding=0):
    b = body + (b"\0" * (padding - 1) + bytes([padding]) if padding else b"")
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, pt, len(b) // 4 + 1 - 1) + b


def lp(data):
    return struct.pack("!H", len(data)) + data


# --- real clients: STUN checks and DTLS flights, offers
stun_payloads, dtls_client = [], {}
for client in CLIENTS:
    frames = pcap_frames(os.path.join(WEBRTC, client, "ice-dtls.pcap"))
    for i, frame in enumerate(frames):
        p = udp_payload(frame)
        dport = struct.unpack_from("!H", frame, 14 + (frame[14] & 0x0F) * 4 + 2)[0]
        if p[0] <= 3:
            stun_payloads.append((client, i, p))
        elif 20 <= p[0] <= 63 and dport != 50000:
            dtls_client.setdefault(client, []).append(p)
    if client == "chromium-156":
        for i, frame in enumerate(frames[:4]):
            write("frame", f"{client}-{i}", frame)
    for name in ["offer.sdp", "answer.sdp"]:
        write("sdp", f"{client}-{name}", open(os.path.join(WEBRTC, client, name), "rb").read())

for client, i, p in stun_payloads[:12]:
    write("stun", f"{client}-{i}", b"\0" + p)
write("stun", "ours", b"\0" + stun_check(b"vx000001fuzzfuzz:peer", b"fuzzpasswordfuzzpassword"))
write("stun", "ours-nominate-twice", b"\x02" + stun_check(b"vx000001fuzzfuzz:peer", b"x", use_candidate=True))
write("stun", "ours-v6-late", b"\x05" + stun_check(b"vx000001fuzzfuzz:peer", b"x"))
write("stun", "wrong-user", b"\0" + stun_check(b"vx000001fuzzfuzz:other", b"x"))

for client, flights in dtls_client.items():
    data = b"".join(b"\x01" + lp(p) for p in flights[:6])
    write("dtls", client, data)
    write("dtls", client + "-hello-twice", b"\x00" + lp(flights[0]) + b"\x8a" + lp(flights[0]))
    write("dtls", client + "-records", b"\x00" + lp(flights[0]))

# --- frames
check = stun_check(b"vx000001fuzzfuzz:peer", b"x")
write("frame", "ipv4-stun", ipv4_frame(check))
write("frame", "ipv4-rtp-vlan", ipv4_frame(rtp(1), vlan=100))
write("frame", "ipv4-options-rtcp", ipv4_frame(rtcp(201, 0, struct.pack("!I", 7)), options=b"\x01\x01\x01\x00"))
write("frame", "ipv6-rtp", ipv6_frame(rtp(2)))
write("frame", "ipv6-hbh-stun", ipv6_frame(check, hop_by_hop=True))
write("frame", "ipv4-dtls", ipv4_frame(bytes([22, 0xFE, 0xFD]) + b"\0" * 8 + b"\0\x01" + b"\x01"))

# --- RTP
level = (0xBEDE, bytes([0x10, 0x85]))
two_byte = (0x1000, bytes([1, 2, 0xAA, 0xBB, 3, 0]))
packets = {
    "plain": rtp(1),
    "audio-level": rtp(2, ext=level),
    "two-byte-ext": rtp(3, ext=two_byte),
    "csrc-padding": rtp(4, csrc=(1, 2, 3), padding=4),
    "other-profile-ext": rtp(5, ext=(0x1234, b"\1\2\3\4")),
}
for name, p in packets.items():
    write("rtp", name, p)

# --- RTCP
sr = rtcp(200, 1, struct.pack("!IQIII", 0x11223344, 0xE0000000_00000000, 160, 10, 1600)
          + struct.pack("!IIIIII", 0x55667788, 0x01000010, 100, 5, 0, 0))
sdes = rtcp(202, 1, struct.pack("!I", 0x11223344) + b"\x01\x05cname\x00")
bye = rtcp(203, 1, struct.pack("!I", 0x11223344) + b"\x03bye")
nack = rtcp(205, 1, struct.pack("!IIHH", 1, 2, 100, 0x8001))
pli = rtcp(206, 1, struct.pack("!II", 1, 2))
app = rtcp(204, 3, struct.pack("!I", 1) + b"NAME" + b"data")
rr = rtcp(201, 1, struct.pack("!I", 9) + struct.pack("!IIIIII", 1, 0xFFFFFFFF, 1, 2, 3, 4), padding=4)
write("rtcp", "sr-sdes", sr + sdes)
write("rtcp", "rr-bye", rr + bye)
write("rtcp", "feedback", nack + pli + app)
write("rtcp", "xr-unknown", rtcp(207, 0, struct.pack("!I", 1) + b"\x04\0\0\x02" + b"\0" * 8))

# --- SRTP: mode byte (profile | RTCP), then [flip][length][plaintext]...
for profile in range(4):
    stream = b"".join(bytes([i * 7]) + lp(rtp(i, ext=level if i % 2 else None)) for i in range(4))
    stream += b"\x09" + lp(rtp(3)) + b"\x10" + lp(rtp(40000, ssrc=2)) + b"\x11" + lp(rtp(1, ssrc=2))
    write("srtp", f"rtp-profile{profile}", bytes([profile]) + stream)
    write("srtp", f"rtcp-profile{profile}", bytes([profile | 4]) + b"\x03" + lp(sr + sdes) + b"\x05" + lp(nack))

# --- control: chunk-size byte, then request lines
lines = [
    {"id": 1, "cmd": "session.create", "client": "198.18.0.2:5000", "client_key": "A" * 40},
    {"id": 2, "cmd": "session.create", "client": "[2001:db8::2]:5000", "client_key": "A" * 40,
     "profile": "AEAD_AES_128_GCM", "edge_key": "B" * 40, "backend": 0, "worker": 0},
    {"id": 3, "cmd": "session.drop", "session": -1},
    {"id": 4, "cmd": "session.show", "slot": 4294967296},
    {"id": "x", "cmd": "session.list"},
    {"id": None, "cmd": "stats"},
    {"id": 5, "cmd": "session.drop", "slot": 1.5},
    {"id": 6, "cmd": "nope"},
]
text = "\n".join(json.dumps(l) for l in lines) + "\n"
write("control", "commands", b"\xff" + text.encode())
write("control", "commands-split", b"\x06" + text.encode())
write("control", "not-json", b"\x10" + b"{\"id\":1,\n[1,2]\n\"str\"\n  \r\n{\"cmd\":7}\n" + b"x" * 600 + b"\nnull\n")
write("control", "long-then-ok", b"\x00" + b"y" * 520 + b"\n" + json.dumps(lines[4]).encode() + b"\n")

# --- config
example = open(os.path.join(HERE, "..", "..", "..", "docs", "examples", "voxedge.yaml"), "rb").read()
write("config", "example.yaml", example)
write("config", "json", json.dumps({"media_address": "198.18.0.1", "media_port": 40000, "workers": 2,
                                     "backends": [{"address": "198.18.0.3", "port": 5004}],
                                     "xdp": {"idle": "busy-poll", "frame_size": 4096}}).encode())
write("config", "flow-style", b"{media_address: '2001:db8::1', backend_address: 198.18.0.1, io: socket, cores: [0, 1]}\n")
write("config", "bad-key", b"media_adress: 198.18.0.1\nlog_level: debug\n")

# --- signaling: HTTP/1.1 requests as SignalingFuzz.respond reads them (request line, fields,
# blank line, body). Tokens are HS256 with SignalingFuzz.secret and expire in 2100, so the
# committed seeds keep reaching past the token check (the fuzz service allows that lifetime).
def b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, secret=b"voxedge-fuzz-secret-0123456789abcdef", alg="HS256"):
    head = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


good = jwt({"aud": "voxedge-fuzz", "sub": "caller-1", "model": "m", "exp": 4102444800})
offer = open(os.path.join(WEBRTC, "aiortc-1.16", "offer.sdp"), "rb").read()


def request(method, target, fields, body=b""):
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return head.encode() + b"\r\n" + body


post = [("Authorization", f"Bearer {good}"), ("Content-Type", "application/sdp"), ("Content-Length", str(len(offer)))]
write("signaling", "post", request("POST", "/v1/sessions", post, offer))
write("signaling", "post-no-token", request("POST", "/v1/sessions", post[1:], offer))
write("signaling", "post-expired", request("POST", "/v1/sessions", [
    ("Authorization", "Bearer " + jwt({"aud": "voxedge-fuzz", "sub": "s", "model": "m", "exp": 1000}))] + post[1:], offer))
write("signaling", "post-wrong-aud", request("POST", "/v1/sessions", [
    ("Authorization", "Bearer " + jwt({"aud": "other", "sub": "s", "model": "m", "exp": 4102444800}))] + post[1:], offer))
write("signaling", "post-alg-none", request("POST", "/v1/sessions", [
    ("Authorization", "Bearer " + jwt({"aud": "voxedge-fuzz", "sub": "s", "model": "m", "exp": 4102444800}, alg="none"))]
    + post[1:], offer))
write("signaling", "post-json", request("POST", "/v1/sessions", [post[0], ("Content-Type", "application/json")], b"{}"))
write("signaling", "post-no-audio", request("POST", "/v1/sessions", post, b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"))
write("signaling", "delete", request("DELETE", "/v1/sessions/0123456789abcdef0123456789abcdef", post[:1]))
write("signaling", "patch", request("PATCH", "/v1/sessions/0123456789abcdef0123456789abcdef", post))
write("signaling", "options", request("OPTIONS", "/v1/sessions", [
    ("Origin", "https://example.com"), ("Access-Control-Request-Method", "POST")]))
write("signaling", "healthz", request("GET", "/healthz", []))
write("signaling", "lf-only", b"POST /v1/sessions HTTP/1.1\nAuthorization: Bearer " + good.encode()
      + b"\nContent-Type: application/sdp\n\n" + offer)
# --- backend: control messages signed with docs/backend-protocol.md's vector key, and RTP
BACKEND_KEY = b"backend-shared-key-0123456789abcdef"


def backend_message(kind, body, sender=0, session=0x0102030405060708, seq=1, ts=5):
    head = bytes([0x0B, 1, kind, sender]) + struct.pack(">HH", len(body), 0) + struct.pack(">QQQ", session, seq, ts)
    return head + body + hmac.new(BACKEND_KEY, head + body, hashlib.sha1).digest()[:16]


stream = struct.pack(">IIBBBBHH", 0x11223344, 48000, 111, 2, 4, 0, 5, 3) + b"opus" + b"model" + b"sub"
write("backend", "start", backend_message(1, stream))
write("backend", "migrated-in-long", backend_message(7, struct.pack(">IIBBBBHH", 1, 16000, 96, 1, 3, 0, 256, 256)
                                                     + b"L16" + b"m" * 256 + b"s" * 256, seq=9))
write("backend", "flush", backend_message(3, b"", sender=1, seq=2, ts=1_000_000_000))
write("backend", "end", backend_message(2, struct.pack(">HH", 9, 0), sender=1, seq=3))
write("backend", "keepalive-ack", backend_message(5, struct.pack(">Q", 5), sender=1, seq=4))
write("backend", "rtp", rtp(7))
