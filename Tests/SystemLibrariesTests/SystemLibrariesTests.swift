import COpenSSL
import COpus
import CSRTP
import CXDP
import Glibc
import Testing

/// Each C module map links and calls into its library (SwiftPM builds no module that
/// nothing imports, so these keep the system-library targets honest).
@Suite struct SystemLibrariesTests {
    @Test func libxdpAndLibbpf() {
        #expect(libbpf_major_version() >= 1)
        // libxdp's ring helpers are header-inline: a zeroed ring reports nothing to consume.
        var ring = xsk_ring_cons()
        var producer: UInt32 = 0
        var consumer: UInt32 = 0
        withUnsafeMutablePointer(to: &producer) { p in
            withUnsafeMutablePointer(to: &consumer) { c in
                ring.producer = p
                ring.consumer = c
                ring.mask = 63
                ring.size = 64
                var index: UInt32 = 0
                #expect(xsk_ring_cons__peek(&ring, 64, &index) == 0)
            }
        }
        var message = [UInt8](repeating: 0, count: 128)
        let status = message.withUnsafeMutableBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { libxdp_strerror(-Int32(EINVAL), $0.baseAddress, $0.count) }
        }
        #expect(status == 0)
        let text = String(decoding: message.prefix { $0 != 0 }, as: UTF8.self)
        #expect(text.contains("nvalid"))
    }

    @Test func openSSL() {
        #expect(OpenSSL_version_num() >= 0x3000_0000)
        var digest = [UInt8](repeating: 0, count: 20)
        _ = SHA1(Array("abc".utf8), 3, &digest)
        #expect(digest.prefix(4) == [0xA9, 0x99, 0x3E, 0x36])
    }

    @Test func libsrtp2() {
        // srtp_init is not safe to race with the interop tests' own (once-only) call.
        #expect(srtp_get_version() >= 0x0200_0000)
        #expect(String(decoding: UnsafeRawBufferPointer(start: srtp_get_version_string(), count: 7), as: UTF8.self) == "libsrtp")
    }

    @Test func libopus() {
        var error: Int32 = 0
        let encoder = opus_encoder_create(48_000, 1, OPUS_APPLICATION_VOIP, &error)
        #expect(error == OPUS_OK && encoder != nil)
        #expect(vox_opus_encoder_set_bitrate(encoder, 32_000) == OPUS_OK)
        opus_encoder_destroy(encoder)
        #expect(String(cString: opus_get_version_string()).hasPrefix("libopus"))
    }
}
