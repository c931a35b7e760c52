import ArborWire
import NIOCore
import NIOEmbedded
import Testing

/// One message of every type, with awkward values (empty arrays, unicode, extremes).
let sampleMessages: [WireMessage] = [
    .hello(Hello(authToken: "s3cret", clientName: "tést-client ✓")),
    .hello(Hello(authToken: "", clientName: "")),
    .serverInfo(ServerInfo(serverName: "box", modelName: "qwen2.5-coder-1.5b", vocabularyHash: 0xDEAD_BEEF_0123_4567,
                           vocabularySize: 151_936, contextLength: 32768, maxTreeNodes: 256, maxSessionTokens: 8192, maxFrameBytes: 4 << 20)),
    .openSession(OpenSession(sampling: WireSampling(temperature: 0.7, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1,
                                                    repetitionLastN: 64, seed: .max), capacity: 4096, suppressedTokens: [151643, 151645])),
    .openSession(OpenSession(sampling: WireSampling(temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, repetitionLastN: 0, seed: 0), capacity: 2)),
    .sessionOpened(SessionOpened(sessionID: 7, capacity: 4096)),
    .prefill(Prefill(isFinal: false, tokens: Array(0..<300))),
    .prefill(Prefill(isFinal: true, tokens: [])),
    .prefilled(Prefilled(committedTokens: 300, computeMilliseconds: 12.5)),
    .verify(Verify(round: 1, tokens: [5, 6, 7], parents: [-1, 0, 0])),
    .verify(Verify(round: .max, tokens: [], parents: [])),
    .verify(Verify(round: 3, tokens: [9, 4], parents: [-1, 0],
                   distributions: [SparseDistribution(tokens: [9, 10], probabilities: [0.75, 0.25]),
                                   SparseDistribution(tokens: [4], probabilities: [1])],
                   distributionIndex: [0, 1])),
    .verify(Verify(round: 4, tokens: [9, 4], parents: [-1, -1],
                   distributions: [SparseDistribution(tokens: [9, 4], probabilities: [0.5, 0.5])],
                   distributionIndex: [0, Verify.deterministic])),
    .result(RoundResult(round: 1, acceptedNodes: [0, 2], nextToken: 11, batchSize: 4, targetMilliseconds: 30.25,
                        samplingMilliseconds: 0.5, queueMilliseconds: 0)),
    .result(RoundResult(round: 2, acceptedNodes: [], nextToken: 0, batchSize: 1, targetMilliseconds: 0, samplingMilliseconds: 0, queueMilliseconds: 3)),
    .ping(nonce: 42), .pong(nonce: .max), .close,
    .error(ErrorFrame(code: .notATree, round: 9, message: "node 3 has parent 5")),
    // The cost extension.
    .capabilities(.roundCosts),
    .capabilities(ClientCapabilities(rawValue: 0xFFFF_FFFF)),  // Unknown bits survive decoding.
    .serverDetails(ServerDetails(pricePerHour: 1.25, energySource: .modelled, wattsPerCore: 6,
                                 targetProfile: [TargetTiming(batchSize: 1, milliseconds: 20.5), TargetTiming(batchSize: 64, milliseconds: 95)])),
    .serverDetails(ServerDetails(pricePerHour: nil, energySource: .none, wattsPerCore: 0)),
    .serverDetails(ServerDetails(pricePerHour: 0, energySource: .measured, wattsPerCore: 0, targetProfile: [TargetTiming(batchSize: .max, milliseconds: 0)])),
    .resultCost(ResultCost(result: RoundResult(round: 1, acceptedNodes: [0, 2], nextToken: 11, batchSize: 4, targetMilliseconds: 30.25,
                                               samplingMilliseconds: 0.5, queueMilliseconds: 0),
                           targetCPUMilliseconds: 58.5, targetJoules: 0.375, energySource: .modelled)),
    .resultCost(ResultCost(result: RoundResult(round: .max, acceptedNodes: [], nextToken: 0, batchSize: 1, targetMilliseconds: 0,
                                               samplingMilliseconds: 0, queueMilliseconds: 0),
                           targetCPUMilliseconds: 0, targetJoules: 0, energySource: .none)),
]

func frame(_ m: WireMessage) -> ByteBuffer { WireCodec.encode(m) }

/// Helpers of the codec suites that pin frames byte for byte: the bytes of a message, one frame
/// read back, and a payload that must be refused as malformed.
protocol FrameChecks {}

extension FrameChecks {
    func bytes(_ m: WireMessage) -> [UInt8] { Array(WireCodec.encode(m).readableBytesView) }

    func decode(_ b: [UInt8]) throws(ErrorFrame) -> WireInbound? {
        var buffer = ByteBuffer(bytes: b)
        return try WireFrameReader().next(from: &buffer)
    }

    func expectMalformed(_ type: UInt8, _ payload: [UInt8], _ why: Comment) {
        var b = rawFrame(type: type, payload: payload)
        do {
            let r = try WireFrameReader().next(from: &b)
            Issue.record("\(why): expected malformedFrame, got \(String(describing: r))")
        } catch {
            #expect(error.code == .malformedFrame, why)
        }
    }
}

/// A frame with raw version, type and payload bytes.
func rawFrame(version: UInt8 = WireCodec.version, type: UInt8, payload: [UInt8], length: UInt32? = nil) -> ByteBuffer {
    var b = ByteBuffer()
    b.writeInteger(length ?? UInt32(payload.count + 2))
    b.writeInteger(version)
    b.writeInteger(type)
    b.writeBytes(payload)
    return b
}

@Suite struct WireCodecTests {
    let reader = WireFrameReader()

    @Test func everyMessageRoundTrips() throws {
        for m in sampleMessages {
            var b = frame(m)
            let size = b.readableBytes
            let decoded = try reader.next(from: &b)
            #expect(decoded == .message(m, bytes: size))
            #expect(b.readableBytes == 0)
        }
    }

    @Test func framesSplitAnywhereReassemble() throws {
        var all = ByteBuffer()
        for m in sampleMessages { var f = frame(m); all.writeBuffer(&f) }
        let bytes = all.readableBytesView
        // Deliver in chunks of every size from 1 to 17 bytes.
        for chunk in 1...17 {
            var pending = ByteBuffer()
            var out: [WireMessage] = []
            var i = bytes.startIndex
            while i < bytes.endIndex {
                let j = min(i + chunk, bytes.endIndex)
                pending.writeBytes(bytes[i..<j])
                i = j
                while let f = try reader.next(from: &pending) {
                    guard case let .message(m, _) = f else { Issue.record("skipped \(f)"); continue }
                    out.append(m)
                }
            }
            #expect(out == sampleMessages)
        }
    }

    @Test func typicalRoundIsSmall() {
        // A 16-node chain and its verdict: what one round costs on the wire.
        let verify = frame(.verify(Verify(round: 1, tokens: Array(0..<16), parents: (0..<16).map { Int32($0) - 1 })))
        let result = frame(.result(RoundResult(round: 1, acceptedNodes: Array(0..<5), nextToken: 1, batchSize: 17,
                                               targetMilliseconds: 1, samplingMilliseconds: 1, queueMilliseconds: 0)))
        #expect(verify.readableBytes == 6 + 4 + 2 + 16 * 8 + 2)
        #expect(result.readableBytes == 6 + 4 + 2 + 5 * 2 + 4 + 2 + 12)
    }

    func expectError(_ code: WireErrorCode, _ buffer: ByteBuffer, limits: WireLimits = WireLimits()) {
        var b = buffer
        do {
            let r = try WireFrameReader(limits: limits).next(from: &b)
            Issue.record("expected \(code), got \(String(describing: r))")
        } catch {
            #expect(error.code == code, "\(error)")
            #expect(!error.message.isEmpty)
        }
    }

    @Test func framingErrorsAreFatal() {
        expectError(.malformedFrame, rawFrame(type: 0x09, payload: [], length: 1))
        expectError(.malformedFrame, rawFrame(type: 0x09, payload: [], length: 0))
        expectError(.frameTooLarge, rawFrame(type: 0x07, payload: [], length: 5_000_000))
        expectError(.frameTooLarge, rawFrame(type: 0x07, payload: [], length: .max))
        expectError(.unsupportedVersion, rawFrame(version: 2, type: 0x09, payload: Array(repeating: 0, count: 8)))
        expectError(.unsupportedVersion, rawFrame(version: 0, type: 0x09, payload: Array(repeating: 0, count: 8)))
        // Payloads that do not parse exactly.
        expectError(.malformedFrame, rawFrame(type: 0x09, payload: [1, 2, 3]))  // Ping needs 8 bytes.
        expectError(.malformedFrame, rawFrame(type: 0x09, payload: Array(repeating: 0, count: 9)))  // Trailing byte.
        expectError(.malformedFrame, rawFrame(type: 0x01, payload: [0, 2, 0xC3, 0x28, 0, 0]))  // Invalid UTF-8.
        expectError(.malformedFrame, rawFrame(type: 0x01, payload: [0xFF, 0xFF]))  // String longer than the frame.
        // Counts that promise more elements than the bytes hold: refused before allocating.
        expectError(.malformedFrame, rawFrame(type: 0x05, payload: [1, 0xFF, 0xFF, 0xFF, 0xFF]))
        expectError(.malformedFrame, rawFrame(type: 0x07, payload: [0, 0, 0, 1, 0xFF, 0xFF]))
        expectError(.malformedFrame, rawFrame(type: 0x05, payload: [2, 0, 0, 0, 0]))  // Unknown prefill flag.
    }

    @Test func unknownTypeIsSkippedAndTheStreamGoesOn() throws {
        var b = rawFrame(type: 0x7F, payload: [1, 2, 3])
        var next = frame(.ping(nonce: 5))
        b.writeBuffer(&next)
        let first = try reader.next(from: &b)
        guard case let .skipped(e, bytes) = first else { Issue.record("got \(String(describing: first))"); return }
        #expect(e.code == .unknownType && bytes == 9)
        #expect(try reader.next(from: &b) == .message(.ping(nonce: 5), bytes: 14))
    }

    @Test func incompleteFramesWait() throws {
        var b = frame(.hello(Hello(authToken: "t", clientName: "c")))
        var partial = b.readSlice(length: b.readableBytes - 1)!
        #expect(try reader.next(from: &partial) == nil)
        #expect(partial.readableBytes > 0)
    }

    @Test func errorCodesKnowWhatIsFatal() {
        #expect(WireErrorCode.allCases.filter(\.isFatal) == [.malformedFrame, .frameTooLarge, .unsupportedVersion, .unauthorized, .serverBusy, .shuttingDown, .timeout, .tlsRequired])
        #expect(Set(WireErrorCode.allCases.map(\.description)).count == WireErrorCode.allCases.count)
    }
}

@Suite struct WireFrameHandlerTests {
    @Test func decodesEncodesAndAnswersFatalErrorsByClosing() throws {
        let channel = EmbeddedChannel(handler: WireFrameHandler())
        try channel.writeInbound(frame(.ping(nonce: 1)))
        #expect(try channel.readInbound(as: WireInbound.self) == .message(.ping(nonce: 1), bytes: 14))
        try channel.writeOutbound(WireMessage.pong(nonce: 1))
        var out = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(try WireFrameReader().next(from: &out) == .message(.pong(nonce: 1), bytes: 14))
        // A frame that is too large: an error frame goes out and the channel closes.
        _ = try? channel.writeInbound(rawFrame(type: 0x07, payload: [], length: 100_000_000))
        var err = try #require(try channel.readOutbound(as: ByteBuffer.self))
        guard case let .message(.error(e), _)? = try WireFrameReader().next(from: &err) else { Issue.record("no error frame"); return }
        #expect(e.code == .frameTooLarge)
        #expect(!channel.isActive)
    }

    @Test func aTricklingFrameTimesOut() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: WireFrameHandler(frameTimeout: .seconds(2)), loop: loop)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        let f = frame(.hello(Hello(authToken: "x", clientName: "slow")))
        // One byte a second: the frame would take 20 s; the deadline runs from its first byte.
        for i in 0..<3 {
            // The handler passes its fatal error on; EmbeddedChannel rethrows it here.
            _ = try? channel.writeInbound(f.getSlice(at: i, length: 1)!)
            loop.advanceTime(by: .seconds(1))
        }
        var err = try #require(try channel.readOutbound(as: ByteBuffer.self))
        guard case let .message(.error(e), _)? = try WireFrameReader().next(from: &err) else { Issue.record("no error frame"); return }
        #expect(e.code == .timeout)
        #expect(!channel.isActive)
    }

    @Test func completeFramesDoNotTimeOut() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: WireFrameHandler(frameTimeout: .seconds(2)), loop: loop)
        try channel.connect(to: .init(ipAddress: "127.0.0.1", port: 1)).wait()
        for n in 0..<5 {
            try channel.writeInbound(frame(.ping(nonce: UInt64(n))))
            loop.advanceTime(by: .seconds(3))
        }
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }
}
