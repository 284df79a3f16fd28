import NIOCore
import NIOPosix
import Synchronization
import Dispatch
import Logging
import VoxEngine
import VoxSignaling

/// The engine behind the public signaling listener (`SignalingEngine`): every call runs on
/// the control thread, as the control socket's requests do, so a POST and a `session.drop`
/// are ordered like any two control requests (docs/architecture.md).
final class EngineSignaling: SignalingEngine, @unchecked Sendable {
    let controller: EngineController
    let server: ControlServer
    let runtime: EngineRuntime

    init(controller: EngineController, server: ControlServer, runtime: EngineRuntime) {
        self.controller = controller
        self.server = server
        self.runtime = runtime
    }

    func createSession(_ request: SessionRequest) async throws(SessionRefusal) -> CreatedSession {
        let controller = UnsafeTransfer(controller).value
        let outcome = await server.perform { () -> Result<CreatedSession, ControlError> in
            do throws(ControlError) {
                let (id, answer) = try controller.createWebRTC(
                    offer: request.offer, subject: request.subject, model: request.model, source: request.source)
                return .success(CreatedSession(session: id, answer: answer))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let created): return created
        case .failure(let error):
            switch error.code {
            case "bad_offer": throw .badOffer(error.message)
            case "draining": throw .draining
            case "no_backend": throw .noBackend(error.message)
            // No slot, or none whose backend-leg port can be bound, or nowhere to send the
            // audio: the edge cannot take the call now; another edge may.
            default: throw .full
            }
        }
    }

    func endSession(_ session: UInt64) async -> Bool {
        let controller = UnsafeTransfer(controller).value
        return await server.perform { controller.end(session: session) }
    }

    func isLive(_ session: UInt64) async -> Bool {
        let controller = UnsafeTransfer(controller).value
        return await server.perform { controller.isLive(session: session) }
    }

    var isDraining: Bool {
        get async { runtime.draining.load(ordering: .acquiring) }
    }
}

/// The public signaling listener of a running engine, on an event loop of its own (a flood of
/// it never holds up the control socket or the private metrics and health listener).
public final class SignalingListener: @unchecked Sendable {
    public let server: SignalingServer
    let group: MultiThreadedEventLoopGroup
    let task: Task<Void, Never>
    /// Where clients POST, e.g. `https://198.18.0.1:8443/v1/sessions`.
    public let url: String

    /// Builds the listener from `configuration` and serves it; throws when it cannot load its
    /// keys or bind its port.
    init(configuration: SignalingConfiguration, engine: any SignalingEngine, logger: Logger) throws(ControlError) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let built = runBlocking { () async -> Result<(SignalingServer, Task<Void, Never>, Int), SignalingSetupError> in
            do throws(SignalingSetupError) {
                let server = try await SignalingServer(
                    configuration: configuration, engine: engine, eventLoopGroup: group, logger: logger)
                let task = Task {
                    do { try await server.run() } catch { logger.error("signaling listener stopped", metadata: ["error": "\(error)"]) }
                }
                return .success((server, task, await server.port()))
            } catch {
                return .failure(error)
            }
        }
        switch built {
        case .failure(let error):
            try? group.syncShutdownGracefully()
            throw ControlError(code: "signaling", message: error.message)
        case .success(let (server, task, port)):
            guard port != 0 else {
                task.cancel()
                try? group.syncShutdownGracefully()
                throw ControlError(
                    code: "signaling",
                    message: "the signaling listener could not bind \(configuration.address):\(configuration.port)")
            }
            self.server = server
            self.task = task
            self.group = group
            let host = configuration.address.contains(":") ? "[\(configuration.address)]" : configuration.address
            url = "\(configuration.plainHTTP ? "http" : "https")://\(host):\(port)\(SignalingService.collection)"
        }
    }

    /// Re-reads the certificate, key and token key files (SIGHUP, `signaling.reload`).
    public func reload() throws(ControlError) {
        let server = server
        let outcome = runBlocking { () async -> SignalingSetupError? in
            do throws(SignalingSetupError) { try await server.reload() } catch { return error }
            return nil
        }
        if let outcome { throw ControlError(code: "signaling", message: outcome.message) }
    }

    /// Stops accepting, then waits for `run` to return (its connections quiesced, its sweep
    /// ended) before the event loop goes: nothing may schedule on a loop already shut down.
    func stop() {
        let server = server
        let task = task
        runBlocking {
            await server.shutdown()
            task.cancel()
            await task.value
        }
        try? group.syncShutdownGracefully()
    }
}
