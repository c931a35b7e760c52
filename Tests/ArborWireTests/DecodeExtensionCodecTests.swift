import ArborWire
import NIOCore
import Testing

/// The decode extension's frames (0x10 decodeQuery, 0x11 decodeOffer, 0x12 decode, 0x13 decoded):
/// exact bytes as documented in docs/PROTOCOL.md §3.16–3.19, and exact parsing.
@Suite struct DecodeExtensionCodecTests: FrameChecks {
    @Test func queryOfferAndDecodeBytes() throws {
        #expect(bytes(.decodeQuery) == [0, 0, 0, 2, 1, 0x10])
        #expect(try decode([0, 0, 0, 2, 1, 0x10]) == .message(.decodeQuery, bytes: 6))
        expectMalformed(0x10, [0], "a query has no payload")
        #expect(bytes(.decodeOffer(DecodeOffer(maxTokens: 64))) == [0, 0, 0, 4, 1, 0x11, 0, 64])
        #expect(try decode([0, 0, 0, 4, 1, 0x11, 1, 0]) == .message(.decodeOffer(DecodeOffer(maxTokens: 256)), bytes: 8))
        expectMalformed(0x11, [1], "short offer")
        let d = Decode(round: 0x0102_0304, count: 32)
        #expect(bytes(.decode(d)) == [0, 0, 0, 8, 1, 0x12, 1, 2, 3, 4, 0, 32])
        #expect(try decode(bytes(.decode(d))) == .message(.decode(d), bytes: 12))
        expectMalformed(0x12, [0, 0, 0, 1, 0], "short count")
        expectMalformed(0x12, [0, 0, 0, 1, 0, 1, 9], "trailing byte")
    }

    @Test func decodedBytes() throws {
        let d = Decoded(round: 7, tokens: [5, 0x0102_0304], targetMilliseconds: 2, samplingMilliseconds: 0.5, queueMilliseconds: 0,
                        targetCPUMilliseconds: 2, targetJoules: 0.5, energySource: .modelled)
        let expected: [UInt8] = [
            0, 0, 0, 0x25, 1, 0x13,   // length 37 = 2 + 4 + 2 + 4·2 + 5·4 + 1
            0, 0, 0, 7,               // round
            0, 2,                     // two tokens
            0, 0, 0, 5, 1, 2, 3, 4,
            0x40, 0, 0, 0,            // target 2 ms
            0x3F, 0, 0, 0,            // sampling 0.5 ms
            0, 0, 0, 0,               // queue 0
            0x40, 0, 0, 0,            // CPU 2 ms
            0x3F, 0, 0, 0,            // 0.5 J
            2,                        // modelled
        ]
        #expect(bytes(.decoded(d)) == expected)
        #expect(try decode(expected) == .message(.decoded(d), bytes: expected.count))
        var payload = Array(expected.dropFirst(6))
        payload[5] = 3  // Three tokens announced, two present.
        expectMalformed(0x13, payload, "token count beyond the bytes")
        expectMalformed(0x13, Array(expected.dropFirst(6)) + [0], "trailing byte")
        var badSource = Array(expected.dropFirst(6))
        badSource[badSource.count - 1] = 9
        expectMalformed(0x13, badSource, "unknown energy source")
    }
}
