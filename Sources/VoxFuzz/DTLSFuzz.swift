import VoxMedia

/// DTLS as the handshake thread sees it: each datagram's records (`DTLSRecord`), then a
/// `DTLSServer` (OpenSSL behind memory BIOs) fed the datagrams in order, with its timers.
///
/// Input: datagrams, each a 16-bit length and its bytes, each preceded by a byte that moves
/// the clock (bit 7: call `handleTimeout` first; bits 0-6: tenths of a second to advance).
/// Seeds are the ClientHello flights of real clients (Tests/Fixtures/webrtc).
enum DTLSFuzz {
    static let context: DTLSServerContext = {
        let certificate = try! DTLSCertificate(commonName: "VoxEdge fuzz")
        return try! DTLSServerContext(certificate: certificate)
    }()
    static let fingerprint = CertificateFingerprint(algorithm: .sha256, digest: (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 29 &+ 3) })

    static func run(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        var server = try! DTLSServer(context: context, remoteFingerprints: [fingerprint], now: 0)
        var now: UInt64 = 0
        var datagrams = 0
        while !reader.isAtEnd, datagrams < 32 {
            let clock = reader.byte()
            guard let datagram = reader.lengthPrefixed() else { break }
            datagrams += 1
            now &+= UInt64(clock & 0x7F) * 100_000_000
            if clock & 0x80 != 0 { check(server.handleTimeout(now: now)) }
            let copy = FuzzBuffer(datagram)
            let bytes = UnsafeRawBufferPointer(start: copy.pointer, count: datagram.count)
            if let records = DTLSRecord.split(bytes) {
                var covered = 0
                for r in records {
                    FuzzCheck.expect(r.lowerBound == covered && r.upperBound <= bytes.count, "records overlap or overrun")
                    covered = r.upperBound
                    FuzzCheck.consume(DTLSRecord.epoch(bytes, record: r) ^ DTLSRecord.version(bytes, record: r))
                    FuzzCheck.consume(DTLSRecord.handshakeFragment(bytes, record: r))
                }
                FuzzCheck.expect(covered == bytes.count, "records do not cover the datagram")
            }
            check(server.handle(now: now, datagram: bytes))
        }
        check(server.handleTimeout(now: now &+ 20_000_000_000))
        check(server.close())
    }

    static func check(_ out: DTLSOutput) {
        for d in out.datagrams {
            FuzzCheck.expect(d.count <= context.configuration.mtu, "a datagram of \(d.count) bytes over the MTU")
        }
        // Without a client certificate matching the fingerprint, no keys can come out.
        FuzzCheck.expect(out.keys == nil, "keys without the client's certificate")
    }
}
