import ArborEngine
import ArborWire
import NIOCore
import Testing

/// The cost extension's frames (0x0D capabilities, 0x0E serverDetails, 0x0F resultCost): exact
/// bytes as documented in docs/PROTOCOL.md §3.12–3.14, exact parsing, and the old-peer path.
@Suite struct CostExtensionCodecTests: FrameChecks {
    let reader = WireFrameReader()

    @Test func capabilitiesBytes() throws {
        #expect(bytes(.capabilities(.roundCosts)) == [0, 0, 0, 6, 1, 0x0D, 0, 0, 0, 1])
        #expect(bytes(.capabilities([])) == [0, 0, 0, 6, 1, 0x0D, 0, 0, 0, 0])
        #expect(WireMessageType.capabilities.rawValue == 0x0D && WireMessage.capabilities([]).type == .capabilities)
        // A newer client's bits are kept, not refused.
        #expect(try decode([0, 0, 0, 6, 1, 0x0D, 0x80, 0, 0, 3]) == .message(.capabilities(ClientCapabilities(rawValue: 0x8000_0003)), bytes: 10))
        expectMalformed(0x0D, [0, 0, 1], "short flags")
        expectMalformed(0x0D, [0, 0, 0, 1, 0], "trailing byte")
    }

    @Test func serverDetailsBytes() throws {
        let d = ServerDetails(pricePerHour: 0.5, energySource: .modelled, wattsPerCore: 6,
                              targetProfile: [TargetTiming(batchSize: 1, milliseconds: 12.5), TargetTiming(batchSize: 2, milliseconds: 13)])
        let expected: [UInt8] = [
            0, 0, 0, 0x19, 1, 0x0E,   // length 25 = 2 + 11 + 6·2
            0x3F, 0, 0, 0,            // price 0.5
            2,                        // modelled
            0x40, 0xC0, 0, 0,         // 6 W per core
            0, 2,                     // two points
            0, 1, 0x41, 0x48, 0, 0,   // batch 1: 12.5 ms
            0, 2, 0x41, 0x50, 0, 0,   // batch 2: 13 ms
        ]
        #expect(bytes(.serverDetails(d)) == expected)
        #expect(try decode(expected) == .message(.serverDetails(d), bytes: 29))
        // Not advertised: a negative price on the wire, nil in memory (NaN too).
        let none = bytes(.serverDetails(ServerDetails(pricePerHour: nil, energySource: .none, wattsPerCore: 0)))
        #expect(none == [0, 0, 0, 0x0D, 1, 0x0E, 0xBF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        for price: Float in [-1, -0.001, -.infinity, .nan] {
            var payload = ByteBuffer()
            payload.writeInteger(price.bitPattern)
            payload.writeBytes([1, 0, 0, 0, 0, 0, 0])
            guard case let .message(.serverDetails(got), _)? = try decode(Array(rawFrame(type: 0x0E, payload: Array(payload.readableBytesView)).readableBytesView)) else {
                Issue.record("price \(price) not decoded"); continue
            }
            #expect(got.pricePerHour == nil && got.energySource == .measured)
        }
        // A negative price in memory goes out as "not advertised".
        #expect(bytes(.serverDetails(ServerDetails(pricePerHour: -3, energySource: .none, wattsPerCore: 0))) == none)
        expectMalformed(0x0E, [0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0], "unknown energy source")
        expectMalformed(0x0E, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1], "a profile point without its bytes")
        expectMalformed(0x0E, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0xFF, 0xFF, 0, 1, 0, 0, 0, 0], "a count beyond the bytes")
        expectMalformed(0x0E, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], "trailing byte")
        expectMalformed(0x0E, [0, 0, 0, 0, 1, 0, 0, 0], "truncated")
    }

    @Test func resultCostIsTheResultPlusNineBytes() throws {
        let r = RoundResult(round: 1, acceptedNodes: [0, 2], nextToken: 11, batchSize: 4, targetMilliseconds: 30.25,
                            samplingMilliseconds: 0.5, queueMilliseconds: 0)
        let plain = bytes(.result(r))
        let costed = bytes(.resultCost(ResultCost(result: r, targetCPUMilliseconds: 58.5, targetJoules: 0.375, energySource: .measured)))
        #expect(costed.count == plain.count + 9 && costed.count == 39 + 2 * 2)
        // Same payload head; then CPU ms, joules, source.
        #expect(Array(costed[6..<plain.count]) == Array(plain[6...]))
        #expect(Array(costed[0..<6]) == [0, 0, 0, 0x27, 1, 0x0F])
        #expect(Array(costed[plain.count...]) == [0x42, 0x6A, 0, 0, 0x3E, 0xC0, 0, 0, 1])
        var payload = Array(costed[6...])
        payload[payload.count - 1] = 9
        expectMalformed(0x0F, payload, "unknown energy source")
        expectMalformed(0x0F, Array(costed[6..<(costed.count - 1)]), "missing source byte")
        expectMalformed(0x0F, Array(plain[6...]), "a plain result payload under the resultCost type")
        expectMalformed(0x08, Array(costed[6...]), "a resultCost payload under the result type")
    }

    @Test func anOldPeerSkipsTheNewTypes() throws {
        // What a reader from before the extension sees: a type it does not know, skipped whole.
        for m in sampleMessages where [.capabilities, .serverDetails, .resultCost].contains(m.type) {
            var b = WireCodec.encode(m)
            let size = b.readableBytes
            b.setInteger(UInt8(0x7E), at: 5)  // Pretend the type is unknown.
            guard case let .skipped(e, n)? = try reader.next(from: &b) else { Issue.record("\(m.type) not skipped"); continue }
            #expect(e.code == .unknownType && n == size && b.readableBytes == 0)
        }
    }

    @Test func energySourcesConvert() {
        for s in WireEnergySource.allCases { #expect(WireEnergySource(s.energySource) == s) }
        #expect(WireEnergySource(EnergySource.measured) == .measured && WireEnergySource(nil) == WireEnergySource.none)
        let d = ServerDetails(pricePerHour: nil, energySource: .none, wattsPerCore: 0,
                              targetProfile: [TargetTiming(batchSize: 4, milliseconds: 8), TargetTiming(batchSize: 1, milliseconds: 5)])
        #expect(d.targetMillisecondsByBatchSize == [4: 8, 1: 5])
    }
}
