import VoxWire

/// How a worker's sessions hold their client 5-tuples. A session without `demuxSSRC` holds
/// its 5-tuple alone: `clientIndex` maps it to the slot. Sessions that named their client's
/// SSRC may share one (SIP trunks, relays: many streams from one address:port, each its own
/// SSRC and key): `clientIndex` maps the 5-tuple to the first of them, `sharedIndex` maps
/// (5-tuple, SSRC) to each, and the slots form a list through `previousSharing` /
/// `nextSharing`. The 5-tuple stays admitted (`vox_flows`) while any of them lives, always
/// under a live one: the first. Per session (commands, checks), never per packet.
extension Worker {
    /// Makes `slot`'s packets from `flow` find it, and admits `flow` if no session of this
    /// worker held it. `moved`: `flow` is new to the slot (false: bound to it again).
    mutating func attach(_ slot: Int, to flow: FlowKey, moved: Bool) {
        let s = store.slots + slot
        guard let ssrc = s.pointee.demuxSSRC else {
            _ = clientIndex.insert(flow, Int32(slot))
            if moved { portBinding.flowChanged(slot: slot, from: nil, to: flow) }
            return
        }
        guard moved else { return }
        _ = sharedIndex.insert(FlowSSRC(flow, ssrc), Int32(slot))
        s.pointee.previousSharing = -1
        s.pointee.nextSharing = -1
        if let first = clientIndex.find(flow), Int(first) != slot, store.slots[Int(first)].demuxSSRC != nil {
            // Joins the sessions already on it, after the first: the index entry and the
            // admission stay as they are.
            let head = store.slots + Int(first)
            let next = head.pointee.nextSharing
            s.pointee.previousSharing = first
            s.pointee.nextSharing = next
            if next >= 0 { store.slots[Int(next)].previousSharing = Int32(slot) }
            head.pointee.nextSharing = Int32(slot)
        } else {
            _ = clientIndex.insert(flow, Int32(slot))
            portBinding.flowChanged(slot: slot, from: nil, to: flow)
        }
    }

    /// Undoes `attach`: `slot` leaves `flow`. The 5-tuple leaves the index and `vox_flows`
    /// with the last session holding it; when the first of several leaves, the next becomes
    /// the one they name. An entry another session took over (a check moved it here) is left
    /// to that session.
    mutating func detach(_ slot: Int, from flow: FlowKey) {
        let s = store.slots + slot
        guard let ssrc = s.pointee.demuxSSRC else {
            guard clientIndex.find(flow) == Int32(slot) else { return }
            clientIndex.remove(flow)
            portBinding.flowChanged(slot: slot, from: flow, to: nil)
            return
        }
        let key = FlowSSRC(flow, ssrc)
        if sharedIndex.find(key) == Int32(slot) { sharedIndex.remove(key) }
        let previous = s.pointee.previousSharing
        let next = s.pointee.nextSharing
        s.pointee.previousSharing = -1
        s.pointee.nextSharing = -1
        if next >= 0 { store.slots[Int(next)].previousSharing = previous }
        if previous >= 0 {
            store.slots[Int(previous)].nextSharing = next
            return
        }
        guard clientIndex.find(flow) == Int32(slot) else { return }
        if next >= 0 {
            _ = clientIndex.insert(flow, next)
            portBinding.flowChanged(slot: Int(next), from: nil, to: flow)  // still admitted, now under `next`
        } else {
            clientIndex.remove(flow)
            portBinding.flowChanged(slot: slot, from: flow, to: nil)
        }
    }
}
