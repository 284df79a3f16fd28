import CVoxBPF
import Testing
import VoxWire
import VoxXDP

/// The Swift side of bpf/voxedge_shared.h: the structs Swift fills are the C structs the
/// program reads (same header), and the conversions from VoxWire types produce the bytes
/// the program builds from a packet. No privileges needed.
@Suite struct SharedLayoutTests {
    @Test func sizesMatchTheCAssertions() {
        // The header's _Static_asserts fix these for the BPF compile; the importer must agree.
        #expect(MemoryLayout<vox_addr>.size == 16)
        #expect(MemoryLayout<vox_flow_key>.size == 36)
        #expect(MemoryLayout<vox_flow_key>.alignment == 4)
        #expect(MemoryLayout<vox_flow_value>.size == 8)
        #expect(MemoryLayout<vox_lpm_key>.size == 20)
        #expect(MemoryLayout<vox_stun_bucket>.size == 16)
        #expect(MemoryLayout<vox_config>.size == 48)
        #expect(XDPCounter.allCases.count == Int(VOX_CNT__COUNT.rawValue))
        #expect(Set(XDPCounter.allCases.map(\.description)).count == XDPCounter.count)
        #expect(!XDPCounter.allCases.contains { $0.description.hasPrefix("counter_") })
    }

    @Test func ipv4FlowKeyHasTheWireBytesTheProgramBuilds() {
        let flow = FlowKey(
            remoteAddress: IPAddress("198.18.1.2")!,
            remotePort: UDPPort(50000),
            localAddress: IPAddress("198.18.0.1")!,
            localPort: UDPPort(40000)
        )
        var key = flow.bpfKey
        let bytes = withUnsafeBytes(of: &key) { Array($0) }
        // ::ffff:198.18.1.2, ::ffff:198.18.0.1, then the ports as on the wire.
        #expect(bytes[0..<16] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 1, 2])
        #expect(bytes[16..<32] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 18, 0, 1])
        #expect(bytes[32..<36] == [0xC3, 0x50, 0x9C, 0x40])
        #expect(key.flowKey == flow)
    }

    @Test func ipv6FlowKeyRoundTrips() {
        let flow = FlowKey(
            remoteAddress: IPAddress("2001:db8:1:2:3:4:5:6")!,
            remotePort: UDPPort(1),
            localAddress: IPAddress("fe80::1")!,
            localPort: UDPPort(65535)
        )
        var key = flow.bpfKey
        let bytes = withUnsafeBytes(of: &key) { Array($0) }
        #expect(bytes[0..<16] == [0x20, 0x01, 0x0D, 0xB8, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6])
        #expect(bytes[16..<18] == [0xFE, 0x80])
        #expect(bytes[32..<36] == [0, 1, 0xFF, 0xFF])
        #expect(key.flowKey == flow)
    }

    @Test func prefixesUseTheMappedForm() throws {
        let v4 = try IPPrefix("198.18.7.200/24")
        #expect(v4.length == 120 && v4.address == IPAddress("198.18.7.0")! && v4.description == "198.18.7.0/24")
        let host = try IPPrefix("198.18.0.1")
        #expect(host.length == 128)
        let v6 = try IPPrefix("2001:db8:ffff::1/33")
        #expect(v6.length == 33 && v6.address == IPAddress("2001:db8:8000::")!)
        #expect(try IPPrefix("::/0").bpfKey.prefix_len == 0)
        let key = v4.bpfKey
        #expect(key.prefix_len == 120 && key.addr.ipAddress == IPAddress("198.18.7.0")!)
        for bad in ["198.18.0.0/33", "2001:db8::/129", "nonsense", "198.18.0.0/x", "198.18.0.0/-1"] {
            #expect(throws: XDPError.self, "\(bad)") { try IPPrefix(bad) }
        }
    }

    @Test func configurationIsCheckedBeforeItReachesTheMap() throws {
        let config = try XDPConfiguration(
            mediaPorts: [UDPPort(40000), UDPPort(3478)],
            backendPorts: UDPPort(41000)...UDPPort(41999),
            stunRatePerSecond: 10,
            stunBurst: 20
        ).bpfValue()
        #expect(config.media_ports.0 == 40000 && config.media_ports.1 == 3478 && config.media_ports.2 == 0)
        #expect(config.backend_port_min == 41000 && config.backend_port_max == 41999)
        #expect(config.flags == UInt32(VOX_CFG_BACKEND_REQUIRE_ADMIT.rawValue))
        #expect(config.stun_rate_per_sec == 10 && config.stun_burst == 20)

        let tooMany = XDPConfiguration(mediaPorts: (1...9).map { UDPPort(UInt16($0)) })
        #expect(throws: XDPError.self) { try tooMany.bpfValue() }
        #expect(throws: XDPError.self) { try XDPConfiguration(mediaPorts: [UDPPort(0)]).bpfValue() }
        #expect(throws: XDPError.self) {
            try XDPConfiguration(mediaPorts: [UDPPort(1)], stunRatePerSecond: 2_000_000).bpfValue()
        }
        do {
            _ = try tooMany.bpfValue()
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }
}
