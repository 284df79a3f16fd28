import NIOCore
import NIOHTTPTypes
import NIOTLS
import Synchronization

/// Connections open on the listener, in all and per source address. `open` refuses past
/// either limit, so one address (or a flood of half-open handshakes from it) cannot hold
/// every connection the listener allows.
final class ConnectionGate: Sendable {
    let maxTotal: Int
    let maxPerSource: Int
    private let state = Mutex<(total: Int, bySource: [String: Int])>((0, [:]))

    init(maxTotal: Int, maxPerSource: Int) {
        self.maxTotal = maxTotal
        self.maxPerSource = maxPerSource
    }

    func open(_ source: String) -> Bool {
        state.withLock { s in
            let mine = s.bySource[source, default: 0]
            guard s.total < maxTotal, mine < maxPerSource else { return false }
            s.total += 1
            s.bySource[source] = mine + 1
            return true
        }
    }

    func close(_ source: String) {
        state.withLock { s in
            s.total -= 1
            let left = s.bySource[source, default: 1] - 1
            s.bySource[source] = left > 0 ? left : nil
        }
    }

    var open: Int { state.withLock { $0.total } }
}

/// Closes a connection whose TLS handshake has not finished `timeout` after it was accepted
/// (a ClientHello and then silence, or nothing at all). Sits right after the TLS handler.
final class HandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let timeout: TimeAmount
    let onTimeout: @Sendable () -> Void
    private var scheduled: Scheduled<Void>?

    init(timeout: TimeAmount, onTimeout: @escaping @Sendable () -> Void) {
        self.timeout = timeout
        self.onTimeout = onTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let onTimeout = self.onTimeout
        scheduled = context.eventLoop.scheduleTask(in: timeout) {
            onTimeout()
            loopContext.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            scheduled?.cancel()
            scheduled = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        scheduled?.cancel()
        scheduled = nil
        context.fireChannelInactive()
    }
}

/// Deadlines on the HTTP exchange (slowloris): a request's complete head within
/// `headerTimeout` of the accept, its body within `bodyTimeout` of its head, the next head
/// within `idleTimeout` of the previous response. Bytes trickling in do not extend them. Also
/// closes the connection after a response that says `Connection: close` has been written.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let onTimeout: @Sendable () -> Void
    private var scheduled: Scheduled<Void>?
    private var closeAfterResponse = false

    init(headerTimeout: TimeAmount, bodyTimeout: TimeAmount, idleTimeout: TimeAmount, onTimeout: @escaping @Sendable () -> Void) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.onTimeout = onTimeout
    }

    private func arm(_ context: ChannelHandlerContext, _ timeout: TimeAmount) {
        scheduled?.cancel()
        let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        let onTimeout = self.onTimeout
        scheduled = context.eventLoop.scheduleTask(in: timeout) {
            onTimeout()
            loopContext.value.close(promise: nil)
        }
    }

    private func disarm() {
        scheduled?.cancel()
        scheduled = nil
    }

    func handlerAdded(context: ChannelHandlerContext) { arm(context, headerTimeout) }
    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: arm(context, bodyTimeout)
        case .body: break
        case .end: disarm()
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            guard closeAfterResponse else {
                arm(context, idleTimeout)
                context.write(data, promise: promise)
                return
            }
            disarm()
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { result in
                promise?.completeWith(result)
                loopContext.value.close(promise: nil)
            }
            context.writeAndFlush(data, promise: written)
        }
    }
}
