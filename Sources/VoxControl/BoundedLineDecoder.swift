import NIOCore

/// What the control socket's line decoder hands on: a request line (without its newline),
/// or word that a line passed the limit and was skipped.
public enum ControlLine: Sendable {
    case line(ByteBuffer)
    case tooLong
}

/// Newline-delimited frames with a maximum length (swift-nio-extras' LineBasedFrameDecoder
/// has none: FINDINGS). A line longer than `maximum` bytes is reported once as `.tooLong`
/// and skipped up to its newline, holding at most `maximum` bytes while it streams by, so
/// the connection stays usable and no line can grow the engine's memory. A partial line at
/// end of input (the client went away mid-line) is dropped.
public struct BoundedLineDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ControlLine

    public let maximum: Int
    /// Skipping the rest of a line that was too long.
    var discarding = false
    /// Bytes at the front of the buffer already searched for a newline.
    var searched = 0

    public init(maximum: Int) {
        precondition(maximum > 0)
        self.maximum = maximum
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let newline = view[(view.startIndex + searched)...].firstIndex(of: 0x0A) else {
            if discarding {
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                searched = 0
            } else if buffer.readableBytes > maximum {
                discarding = true
                buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                searched = 0
                context.fireChannelRead(wrapInboundOut(.tooLong))
            } else {
                searched = buffer.readableBytes
            }
            return .needMoreData
        }
        let length = newline - view.startIndex
        searched = 0
        if discarding {
            discarding = false
            buffer.moveReaderIndex(forwardBy: length + 1)
        } else if length > maximum {
            buffer.moveReaderIndex(forwardBy: length + 1)
            context.fireChannelRead(wrapInboundOut(.tooLong))
        } else {
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            context.fireChannelRead(wrapInboundOut(.line(line)))
        }
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // What is left is a line without its newline: the client went away in the middle.
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        searched = 0
        return .needMoreData
    }
}
