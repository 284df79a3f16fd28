import Foundation
import Logging
import NIOCore
import NIOEmbedded
import VoxControl
import VoxEngine
import VoxWire

/// The control socket's request path without its socket: the input's bytes reach
/// `BoundedLineDecoder` in chunks (as reads split them), each line goes through
/// `ControlWire.parse` and `EngineController.handle`, and each reply through
/// `ControlWire.encode` — what `ControlServer` does per line.
///
/// The engine is one with no backends that is never started: every command's arguments are
/// decoded and checked as they are on a live engine (ids, slots, keys, addresses, profiles),
/// and a create that passes them all stops at "no backends are configured", so no input
/// creates anything and every run starts from the same state.
///
/// Input: one byte giving the chunk size (1 + its value), then the bytes of the stream.
enum ControlFuzz {
    static let maximumLine = 512

    nonisolated(unsafe) static let controller: EngineController = {
        var c = EngineConfiguration()
        c.io = .socket
        c.maxSessions = 4
        c.mediaAddress = IPAddress("198.18.0.1")!
        let runtime = try! EngineRuntime(
            configuration: c, logger: Logger(label: "voxedge.fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
        return EngineController(runtime: runtime)
    }()

    static func run(_ data: UnsafeRawBufferPointer) {
        var reader = FuzzReader(data)
        let chunk = Int(reader.byte()) + 1
        let stream = reader.rest()
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(BoundedLineDecoder(maximum: maximumLine)))
        var delivered = 0
        var offset = 0
        while offset < stream.count {
            let n = min(chunk, stream.count - offset)
            var buffer = channel.allocator.buffer(capacity: n)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + n)]))
            offset += n
            _ = try? channel.writeInbound(buffer)
            delivered += drain(channel)
        }
        _ = try? channel.finish()
        delivered += drain(channel)
        FuzzCheck.expect(delivered <= stream.count, "more line bytes out (\(delivered)) than in (\(stream.count))")
    }

    /// Handles every line the decoder has produced; returns the bytes they account for.
    static func drain(_ channel: EmbeddedChannel) -> Int {
        var bytes = 0
        while let line = try? channel.readInbound(as: ControlLine.self) {
            switch line {
            case .tooLong:
                checkReply(ControlWire.notice("line_too_long", "request lines are limited to \(maximumLine) bytes"))
                bytes += maximumLine + 1
            case .line(let buffer):
                FuzzCheck.expect(buffer.readableBytes <= maximumLine, "a line of \(buffer.readableBytes) bytes passed")
                FuzzCheck.expect(!buffer.readableBytesView.contains(0x0A), "a line holds a newline")
                bytes += buffer.readableBytes + 1
                switch ControlWire.parse(buffer.readableBytesView) {
                case .blank:
                    break
                case .invalid(let id, let reply):
                    checkReply(ControlWire.encode(id: id, reply))
                case .request(let request):
                    let reply = controller.handle(request)
                    FuzzCheck.expect(
                        request.command != "session.create" || reply.error != nil, "a session was created with no backend")
                    checkReply(ControlWire.encode(id: request.id, reply))
                }
            }
        }
        return bytes
    }

    /// A reply is one line of a JSON object with `ok`.
    static func checkReply(_ line: [UInt8]) {
        FuzzCheck.expect(line.last == 0x0A && line.dropLast().allSatisfy { $0 != 0x0A }, "a reply is not one line")
        let object = try? JSONSerialization.jsonObject(with: Data(line.dropLast())) as? [String: Any]
        FuzzCheck.expect(object?["ok"] is Bool, "a reply without ok: \(String(decoding: line, as: UTF8.self))")
    }
}
