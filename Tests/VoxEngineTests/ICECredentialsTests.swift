import Testing
import VoxEngine
import VoxMedia
import VoxTestKit

/// The ufrag the SDP answer carries (VoxMedia) is the one the workers read the slot from
/// (VoxEngine's IceUfrag): the two sides of DESIGN §2a agree on the format.
@Suite struct ICECredentialsFormatTests {
    @Test(arguments: [0, 1, 0x2A, 0xFFFF, 0xABCDEF, (1 << 24) - 1])
    func workersFindTheSlotInTheAnswersUfrag(slot: Int) throws {
        var rng = SeededRandom(seed: UInt64(slot) + 1)
        let credentials = ICECredentials.make(slot: slot, using: &rng)
        let ufrag = try #require(IceUfrag(credentials.ufrag))
        #expect(ufrag.description == credentials.ufrag)
        var bytes = Array(credentials.ufrag.utf8)
        let found = bytes.withUnsafeMutableBytes { IceUfrag.slot(in: $0.baseAddress!, count: $0.count) }
        #expect(found == slot)
        // The USERNAME of a check is "<our ufrag>:<theirs>": the slot is read from its start.
        bytes += Array(":cli1".utf8)
        #expect(bytes.withUnsafeBytes { IceUfrag.slot(in: $0.baseAddress!, count: $0.count) } == slot)
    }
}
