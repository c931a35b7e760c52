import NIOCore

/// Limits a receiver enforces while decoding. A frame or field beyond them is an error, never
/// an allocation: every count is checked against the bytes actually present before reading.
public struct WireLimits: Sendable, Equatable {
    /// Largest frame (bytes after the length field).
    public var maxFrameBytes: Int
    /// Longest string field (auth token, names, messages), in UTF-8 bytes.
    public var maxStringBytes: Int

    public init(maxFrameBytes: Int = 4 << 20, maxStringBytes: Int = 4096) {
        self.maxFrameBytes = maxFrameBytes
        self.maxStringBytes = maxStringBytes
    }
}

/// Frame layout (all integers big-endian):
///
///     u32 length   bytes that follow (version + type + payload), 2 ≤ length ≤ maxFrameBytes
///     u8  version  WireCodec.version
///     u8  type     WireMessageType
///     payload      per type, see docs/PROTOCOL.md
public enum WireCodec {
    /// The protocol version this build speaks.
    public static let version: UInt8 = 1
    /// Bytes before the payload: length, version, type.
    public static let headerBytes = 6

    // MARK: Encoding

    /// Appends `message` as one frame to `buffer`; returns the frame's size in bytes.
    @discardableResult
    public static func encode(_ message: WireMessage, into buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(0))  // Length, patched below.
        buffer.writeInteger(version)
        buffer.writeInteger(message.type.rawValue)
        switch message {
        case let .hello(m):
            buffer.writeWireString(m.authToken)
            buffer.writeWireString(m.clientName)
        case let .serverInfo(m):
            buffer.writeWireString(m.serverName)
            buffer.writeWireString(m.modelName)
            buffer.writeInteger(m.vocabularyHash)
            buffer.writeInteger(m.vocabularySize)
            buffer.writeInteger(m.contextLength)
            buffer.writeInteger(m.maxTreeNodes)
            buffer.writeInteger(m.maxSessionTokens)
            buffer.writeInteger(m.maxFrameBytes)
        case let .openSession(m):
            let s = m.sampling
            buffer.writeInteger(s.temperature.bitPattern)
            buffer.writeInteger(s.topK)
            buffer.writeInteger(s.topP.bitPattern)
            buffer.writeInteger(s.minP.bitPattern)
            buffer.writeInteger(s.repetitionPenalty.bitPattern)
            buffer.writeInteger(s.repetitionLastN)
            buffer.writeInteger(s.seed)
            buffer.writeInteger(m.capacity)
            buffer.writeInteger(UInt32(m.suppressedTokens.count))
            for t in m.suppressedTokens { buffer.writeInteger(t) }
        case let .sessionOpened(m):
            buffer.writeInteger(m.sessionID)
            buffer.writeInteger(m.capacity)
        case let .prefill(m):
            buffer.writeInteger(UInt8(m.isFinal ? 1 : 0))
            buffer.writeInteger(UInt32(m.tokens.count))
            for t in m.tokens { buffer.writeInteger(t) }
        case let .prefilled(m):
            buffer.writeInteger(m.committedTokens)
            buffer.writeInteger(m.computeMilliseconds.bitPattern)
        case let .verify(m):
            buffer.writeInteger(m.round)
            buffer.writeInteger(UInt16(m.tokens.count))
            for t in m.tokens { buffer.writeInteger(t) }
            for p in m.parents { buffer.writeInteger(p) }
            buffer.writeInteger(UInt16(m.distributions.count))
            for d in m.distributions {
                buffer.writeInteger(UInt32(d.tokens.count))
                for i in d.tokens.indices {
                    buffer.writeInteger(d.tokens[i])
                    buffer.writeInteger(d.probabilities[i].bitPattern)
                }
            }
            if !m.distributions.isEmpty {
                for i in m.distributionIndex { buffer.writeInteger(i) }
            }
        case let .result(m):
            writeResult(m, into: &buffer)
        case let .ping(nonce), let .pong(nonce):
            buffer.writeInteger(nonce)
        case .close:
            break
        case let .error(m):
            buffer.writeInteger(m.code.rawValue)
            buffer.writeInteger(m.round)
            buffer.writeWireString(m.message)
        case let .capabilities(m):
            buffer.writeInteger(m.rawValue)
        case let .serverDetails(m):
            buffer.writeInteger((m.pricePerHour.map { $0.isFinite && $0 >= 0 ? $0 : -1 } ?? -1).bitPattern)
            buffer.writeInteger(m.energySource.rawValue)
            buffer.writeInteger(m.wattsPerCore.bitPattern)
            let points = m.targetProfile.prefix(Int(UInt16.max))
            buffer.writeInteger(UInt16(points.count))
            for p in points {
                buffer.writeInteger(p.batchSize)
                buffer.writeInteger(p.milliseconds.bitPattern)
            }
        case let .resultCost(m):
            writeResult(m.result, into: &buffer)
            buffer.writeInteger(m.targetCPUMilliseconds.bitPattern)
            buffer.writeInteger(m.targetJoules.bitPattern)
            buffer.writeInteger(m.energySource.rawValue)
        case .decodeQuery, .listModels:
            break
        case let .modelList(m):
            buffer.writeInteger(m.selected)
            let models = m.models.prefix(Int(UInt16.max))
            buffer.writeInteger(UInt16(models.count))
            for x in models {
                buffer.writeWireString(x.name)
                buffer.writeInteger(x.vocabularyHash)
                buffer.writeInteger(x.vocabularySize)
                buffer.writeInteger(x.contextLength)
                buffer.writeInteger(UInt8(x.loaded ? 1 : 0))
                buffer.writeInteger(x.fileBytes)
            }
        case let .selectModel(m):
            buffer.writeWireString(m.name)
        case let .admission(m):
            buffer.writeInteger(m.state.rawValue)
            buffer.writeInteger(m.position)
            buffer.writeInteger(m.waitMilliseconds)
            buffer.writeInteger(m.deadlineMilliseconds)
        case let .decodeOffer(m):
            buffer.writeInteger(m.maxTokens)
        case let .decode(m):
            buffer.writeInteger(m.round)
            buffer.writeInteger(m.count)
        case let .decoded(m):
            buffer.writeInteger(m.round)
            let tokens = m.tokens.prefix(Int(UInt16.max))
            buffer.writeInteger(UInt16(tokens.count))
            for t in tokens { buffer.writeInteger(t) }
            for x in [m.targetMilliseconds, m.samplingMilliseconds, m.queueMilliseconds, m.targetCPUMilliseconds, m.targetJoules] {
                buffer.writeInteger(x.bitPattern)
            }
            buffer.writeInteger(m.energySource.rawValue)
        }
        let size = buffer.writerIndex - start
        buffer.setInteger(UInt32(size - 4), at: start)
        return size
    }

    /// The `result` payload (also the head of `resultCost`).
    private static func writeResult(_ m: RoundResult, into buffer: inout ByteBuffer) {
        buffer.writeInteger(m.round)
        buffer.writeInteger(UInt16(m.acceptedNodes.count))
        for n in m.acceptedNodes { buffer.writeInteger(n) }
        buffer.writeInteger(m.nextToken)
        buffer.writeInteger(m.batchSize)
        buffer.writeInteger(m.targetMilliseconds.bitPattern)
        buffer.writeInteger(m.samplingMilliseconds.bitPattern)
        buffer.writeInteger(m.queueMilliseconds.bitPattern)
    }

    /// `message` as one frame.
    public static func encode(_ message: WireMessage, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(message, into: &buffer)
        return buffer
    }

    // MARK: Decoding

    /// Parses the payload of a frame of `type` (the bytes after the type byte, exactly).
    /// Unknown types throw `.unknownType`; anything that does not parse exactly — short fields,
    /// counts that do not match the bytes, trailing bytes, invalid UTF-8 — throws `.malformedFrame`.
    public static func decodePayload(type rawType: UInt8, payload: inout ByteBuffer, limits: WireLimits = WireLimits()) throws(ErrorFrame) -> WireMessage {
        guard let type = WireMessageType(rawValue: rawType) else {
            throw ErrorFrame(code: .unknownType, message: "frame type 0x\(String(rawType, radix: 16)) is not part of protocol version \(version)")
        }
        var r = PayloadReader(buffer: payload, type: type, limits: limits)
        let message: WireMessage
        switch type {
        case .hello:
            message = .hello(Hello(authToken: try r.string("auth token"), clientName: try r.string("client name")))
        case .serverInfo:
            message = .serverInfo(ServerInfo(
                serverName: try r.string("server name"), modelName: try r.string("model name"),
                vocabularyHash: try r.u64("vocabulary hash"), vocabularySize: try r.u32("vocabulary size"),
                contextLength: try r.u32("context length"), maxTreeNodes: try r.u32("max tree nodes"),
                maxSessionTokens: try r.u32("max session tokens"), maxFrameBytes: try r.u32("max frame bytes")))
        case .openSession:
            let sampling = WireSampling(
                temperature: try r.f32("temperature"), topK: try r.u32("top-k"), topP: try r.f32("top-p"),
                minP: try r.f32("min-p"), repetitionPenalty: try r.f32("repetition penalty"),
                repetitionLastN: try r.u32("repetition window"), seed: try r.u64("seed"))
            let capacity = try r.u32("capacity")
            let n = try r.count32("suppressed tokens", elementBytes: 4)
            message = .openSession(OpenSession(sampling: sampling, capacity: capacity, suppressedTokens: try r.u32s(n)))
        case .sessionOpened:
            message = .sessionOpened(SessionOpened(sessionID: try r.u32("session id"), capacity: try r.u32("capacity")))
        case .prefill:
            let flags = try r.u8("flags")
            guard flags & ~1 == 0 else { throw r.malformed("unknown prefill flags 0x\(String(flags, radix: 16))") }
            let n = try r.count32("prompt tokens", elementBytes: 4)
            message = .prefill(Prefill(isFinal: flags & 1 == 1, tokens: try r.u32s(n)))
        case .prefilled:
            message = .prefilled(Prefilled(committedTokens: try r.u32("committed tokens"), computeMilliseconds: try r.f32("compute time")))
        case .verify:
            let round = try r.u32("round")
            let n = try r.count16("nodes", elementBytes: 8)
            let tokens = try r.u32s(n)
            var parents = [Int32](repeating: 0, count: n)
            for i in 0..<n { parents[i] = Int32(bitPattern: try r.u32("parent")) }
            let d = try r.count16("distributions", elementBytes: 4)
            var distributions: [SparseDistribution] = []
            distributions.reserveCapacity(d)
            for _ in 0..<d {
                let entries = try r.count32("distribution entries", elementBytes: 8)
                var ids = [UInt32](repeating: 0, count: entries), ps = [Float](repeating: 0, count: entries)
                for j in 0..<entries {
                    ids[j] = try r.u32("token")
                    ps[j] = try r.f32("probability")
                }
                distributions.append(SparseDistribution(tokens: ids, probabilities: ps))
            }
            var index: [UInt16] = []
            if d > 0 {
                guard r.remaining >= 2 * n else { throw r.malformed("\(n) distribution indices need \(2 * n) bytes, \(r.remaining) left") }
                index = (0..<n).map { _ in r.unchecked16() }
            }
            message = .verify(Verify(round: round, tokens: tokens, parents: parents, distributions: distributions, distributionIndex: index))
        case .result:
            message = .result(try r.result())
        case .ping:
            message = .ping(nonce: try r.u64("nonce"))
        case .pong:
            message = .pong(nonce: try r.u64("nonce"))
        case .close:
            message = .close
        case .error:
            let raw = try r.u16("error code")
            let round = try r.u32("round")
            let text = try r.string("message")
            // An unknown code from a newer peer is still an error: report it as internal.
            message = .error(ErrorFrame(code: WireErrorCode(rawValue: raw) ?? .internalError, round: round,
                                        message: WireErrorCode(rawValue: raw) == nil ? "(code \(raw)) \(text)" : text))
        case .capabilities:
            // Unknown bits are a newer client's features: ignored, not malformed.
            message = .capabilities(ClientCapabilities(rawValue: try r.u32("flags")))
        case .serverDetails:
            let price = try r.f32("price per hour")
            let source = try r.energySource()
            let watts = try r.f32("watts per core")
            let n = try r.count16("profile points", elementBytes: 6)
            var points: [TargetTiming] = []
            points.reserveCapacity(n)
            for _ in 0..<n { points.append(TargetTiming(batchSize: try r.u16("batch size"), milliseconds: try r.f32("milliseconds"))) }
            message = .serverDetails(ServerDetails(pricePerHour: price >= 0 && price.isFinite ? price : nil, energySource: source,
                                                   wattsPerCore: watts, targetProfile: points))
        case .resultCost:
            message = .resultCost(ResultCost(result: try r.result(), targetCPUMilliseconds: try r.f32("target CPU time"),
                                             targetJoules: try r.f32("target energy"), energySource: try r.energySource()))
        case .decodeQuery:
            message = .decodeQuery
        case .listModels:
            message = .listModels
        case .modelList:
            let selected = try r.u16("selected model")
            // Each model takes at least 2 + 8 + 4 + 4 + 1 + 8 bytes.
            let n = try r.count16("models", elementBytes: 27)
            var models: [ServedModel] = []
            models.reserveCapacity(n)
            for _ in 0..<n {
                let name = try r.string("model name")
                let hash = try r.u64("vocabulary hash")
                let size = try r.u32("vocabulary size")
                let context = try r.u32("context length")
                let loaded = try r.u8("loaded")
                guard loaded <= 1 else { throw r.malformed("loaded must be 0 or 1, got \(loaded)") }
                models.append(ServedModel(name: name, vocabularyHash: hash, vocabularySize: size, contextLength: context,
                                          loaded: loaded == 1, fileBytes: try r.u64("file bytes")))
            }
            guard n == 0 ? selected == 0 : Int(selected) < n else { throw r.malformed("selected model \(selected) of \(n)") }
            message = .modelList(ModelList(selected: selected, models: models))
        case .selectModel:
            message = .selectModel(SelectModel(name: try r.string("model name")))
        case .admission:
            let raw = try r.u8("admission state")
            guard let state = Admission.State(rawValue: raw) else { throw r.malformed("admission state must be 1 or 2, got \(raw)") }
            message = .admission(Admission(state: state, position: try r.u32("queue position"), waitMilliseconds: try r.u32("wait"),
                                           deadlineMilliseconds: try r.u32("deadline")))
        case .decodeOffer:
            message = .decodeOffer(DecodeOffer(maxTokens: try r.u16("max tokens")))
        case .decode:
            message = .decode(Decode(round: try r.u32("round"), count: try r.u16("count")))
        case .decoded:
            let round = try r.u32("round")
            let n = try r.count16("decoded tokens", elementBytes: 4)
            let tokens = try r.u32s(n)
            message = .decoded(Decoded(
                round: round, tokens: tokens, targetMilliseconds: try r.f32("target time"), samplingMilliseconds: try r.f32("sampling time"),
                queueMilliseconds: try r.f32("queue time"), targetCPUMilliseconds: try r.f32("target CPU time"),
                targetJoules: try r.f32("target energy"), energySource: try r.energySource()))
        }
        guard r.remaining == 0 else { throw r.malformed("\(r.remaining) unexpected bytes after the payload") }
        payload = r.buffer
        return message
    }
}

/// Reads a payload field by field; every read checks the bytes left first.
struct PayloadReader {
    var buffer: ByteBuffer
    let type: WireMessageType
    let limits: WireLimits

    var remaining: Int { buffer.readableBytes }

    func malformed(_ what: String) -> ErrorFrame {
        ErrorFrame(code: .malformedFrame, message: "\(type) frame: \(what)")
    }

    private mutating func read<T: FixedWidthInteger>(_ field: String, as: T.Type) throws(ErrorFrame) -> T {
        guard let v = buffer.readInteger(as: T.self) else {
            throw malformed("truncated at \(field) (\(MemoryLayout<T>.size) bytes needed, \(remaining) left)")
        }
        return v
    }

    mutating func u8(_ f: String) throws(ErrorFrame) -> UInt8 { try read(f, as: UInt8.self) }
    mutating func u16(_ f: String) throws(ErrorFrame) -> UInt16 { try read(f, as: UInt16.self) }
    mutating func u32(_ f: String) throws(ErrorFrame) -> UInt32 { try read(f, as: UInt32.self) }
    mutating func u64(_ f: String) throws(ErrorFrame) -> UInt64 { try read(f, as: UInt64.self) }
    mutating func f32(_ f: String) throws(ErrorFrame) -> Float { Float(bitPattern: try read(f, as: UInt32.self)) }
    /// A u16 whose bytes were checked to be present.
    mutating func unchecked16() -> UInt16 { buffer.readInteger(as: UInt16.self)! }

    /// A u16 element count, checked against the bytes left (each element at least `elementBytes`).
    mutating func count16(_ f: String, elementBytes: Int) throws(ErrorFrame) -> Int {
        let n = Int(try u16(f))
        guard n * elementBytes <= remaining else { throw malformed("\(n) \(f) need \(n * elementBytes) bytes, \(remaining) left") }
        return n
    }

    /// A u32 element count, checked against the bytes left.
    mutating func count32(_ f: String, elementBytes: Int) throws(ErrorFrame) -> Int {
        let n = Int(try u32(f))
        guard n <= remaining / elementBytes else { throw malformed("\(n) \(f) need \(n * elementBytes) bytes, \(remaining) left") }
        return n
    }

    /// `n` u32 values (the count was checked).
    mutating func u32s(_ n: Int) throws(ErrorFrame) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: n)
        for i in 0..<n { out[i] = try u32("token") }
        return out
    }

    /// The `result` payload (also the head of `resultCost`).
    mutating func result() throws(ErrorFrame) -> RoundResult {
        let round = try u32("round")
        let n = try count16("accepted nodes", elementBytes: 2)
        let accepted = (0..<n).map { _ in unchecked16() }
        return RoundResult(
            round: round, acceptedNodes: accepted, nextToken: try u32("next token"), batchSize: try u16("batch size"),
            targetMilliseconds: try f32("target time"), samplingMilliseconds: try f32("sampling time"),
            queueMilliseconds: try f32("queue time"))
    }

    /// An energy source byte; values this side does not know are malformed.
    mutating func energySource() throws(ErrorFrame) -> WireEnergySource {
        let raw = try u8("energy source")
        guard let source = WireEnergySource(rawValue: raw) else { throw malformed("unknown energy source \(raw)") }
        return source
    }

    /// A u16-length-prefixed UTF-8 string.
    mutating func string(_ f: String) throws(ErrorFrame) -> String {
        let n = Int(try u16(f))
        guard n <= limits.maxStringBytes else { throw malformed("\(f) of \(n) bytes exceeds \(limits.maxStringBytes)") }
        guard let bytes = buffer.readBytes(length: n) else { throw malformed("\(f) of \(n) bytes truncated (\(remaining) left)") }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw malformed("\(f) is not valid UTF-8") }
        return s
    }
}

extension ByteBuffer {
    /// A u16 length and the UTF-8 bytes (cut at 65,535 bytes on a character boundary).
    mutating func writeWireString(_ s: String) {
        var utf8 = Array(s.utf8)
        if utf8.count > Int(UInt16.max) {
            var cut = Int(UInt16.max)
            while cut > 0 && utf8[cut] & 0xC0 == 0x80 { cut -= 1 }
            utf8 = Array(utf8[..<cut])
        }
        writeInteger(UInt16(utf8.count))
        writeBytes(utf8)
    }
}

/// What a frame reader produces for one complete frame.
public enum WireInbound: Equatable, Sendable {
    /// A well-formed message and the frame's size on the wire (header included).
    case message(WireMessage, bytes: Int)
    /// A frame that was skipped (a non-fatal problem such as an unknown type).
    case skipped(ErrorFrame, bytes: Int)
}

/// Splits a byte stream into frames (pure logic, no I/O: the NIO handler and the fuzz test use it).
///
/// Fatal problems (a length beyond the limit or below the header, a wrong version, a payload
/// that does not parse) throw: the stream cannot be trusted after them. An unknown frame type is
/// skipped whole, since its length is known.
public struct WireFrameReader: Sendable {
    public let limits: WireLimits

    public init(limits: WireLimits = WireLimits()) { self.limits = limits }

    /// The next complete frame in `buffer`, consuming it; nil when more bytes are needed.
    public func next(from buffer: inout ByteBuffer) throws(ErrorFrame) -> WireInbound? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 2 else { throw ErrorFrame(code: .malformedFrame, message: "frame length \(length) is shorter than the version and type bytes") }
        guard length <= limits.maxFrameBytes else {
            throw ErrorFrame(code: .frameTooLarge, message: "frame of \(length) bytes exceeds the limit of \(limits.maxFrameBytes)")
        }
        let total = 4 + Int(length)
        guard buffer.readableBytes >= total else { return nil }
        let frameVersion = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self)!
        guard frameVersion == WireCodec.version else {
            throw ErrorFrame(code: .unsupportedVersion, message: "protocol version \(frameVersion) is not supported (this side speaks \(WireCodec.version))")
        }
        let type = buffer.getInteger(at: buffer.readerIndex + 5, as: UInt8.self)!
        var payload = buffer.getSlice(at: buffer.readerIndex + WireCodec.headerBytes, length: Int(length) - 2)!
        buffer.moveReaderIndex(forwardBy: total)
        do {
            return .message(try WireCodec.decodePayload(type: type, payload: &payload, limits: limits), bytes: total)
        } catch where error.code == .unknownType {
            return .skipped(error, bytes: total)
        }
    }
}
