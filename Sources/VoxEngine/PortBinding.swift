import Glibc
import VoxIO
import VoxWire

/// What a worker's port must be told about the worker's sessions, as one concrete value (no
/// existential on the worker): on AF_XDP the session's 5-tuples are admitted in the XDP
/// program's `vox_flows`, so its DTLS and SRTP get past XDP; on kernel sockets the session's
/// backend-leg port is opened. The owning worker calls it while applying a command or when a
/// valid check moves a session — per session, never per packet.
public enum PortBinding: @unchecked Sendable {
    /// The in-memory port (tests, `bench micro`): nothing to admit or open.
    case none
    case xdp(XDPAdmission)
    case socket(SocketQueue)

    /// `slot` starts; `backendPort` is its backend leg's edge port, and `socket` the socket
    /// the control thread bound to it (socket port), or -1.
    func sessionStarted(slot: Int, backendPort: UDPPort, socket: Int32) {
        guard case .socket(let sockets) = self else {
            if socket >= 0 { close(socket) }
            return
        }
        // The control thread bound the port (a port already taken failed the create); only a
        // session created without it (tests driving `SessionControl` directly) binds here.
        try? sockets.openBackendPort(backendPort, socket: socket)
    }

    /// `slot` ended. On the socket port, what the worker has put on the TX ring (its end
    /// message to the backend among it) is sent first: it leaves through this port's socket.
    func sessionEnded(slot: Int, backendPort: UDPPort) {
        guard case .socket(let sockets) = self else { return }
        sockets.transmit()
        sockets.closeBackendPort(backendPort)
    }

    /// A 5-tuple of `slot` moved (`from` nil: first bound; `to` nil: gone). Keys are as the
    /// edge sees them: the client leg's, or the backend leg's (remote = the backend).
    func flowChanged(slot: Int, from: FlowKey?, to: FlowKey?) {
        guard case .xdp(let admission) = self else { return }
        admission.change(slot, from, to)
    }
}
