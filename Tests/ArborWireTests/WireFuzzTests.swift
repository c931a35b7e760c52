import ArborTestSupport
import ArborWire
import NIOCore
import Testing

/// A million randomly mutated frames through the decoder: every one must decode, be skipped or
/// be refused with an error — never crash, and never produce more elements than its bytes hold.
@Suite struct WireFuzzTests {
    /// Elements a decoded message holds (tokens, parents, entries, string bytes).
    func elements(_ m: WireMessage) -> Int {
        switch m {
        case let .hello(h): h.authToken.utf8.count + h.clientName.utf8.count
        case let .openSession(o): o.suppressedTokens.count
        case let .prefill(p): p.tokens.count
        case let .verify(v): v.tokens.count + v.parents.count + v.distributionIndex.count + v.distributions.reduce(0) { $0 + 2 * $1.tokens.count }
        case let .result(r): r.acceptedNodes.count
        case let .error(e): e.message.utf8.count
        case let .serverDetails(d): 2 * d.targetProfile.count
        case let .resultCost(c): c.result.acceptedNodes.count
        default: 0
        }
    }

    @Test func aMillionMutatedFramesAreHandled() {
        let seeds = sampleMessages.map { Array(WireCodec.encode($0).readableBytesView) }
        let reader = WireFrameReader(limits: WireLimits(maxFrameBytes: 1 << 16))
        var rng = SplitMix64(seed: 0xA4B0_2026)
        var outcomes = [String: Int]()
        for _ in 0..<1_000_000 {
            var bytes = seeds[rng.below(seeds.count)]
            // 1–4 mutations: flip bits, overwrite, insert, delete, truncate, or rewrite the length.
            for _ in 0...rng.below(4) {
                switch rng.below(6) {
                case 0: let i = rng.below(bytes.count); bytes[i] ^= UInt8(1 << rng.below(8))
                case 1: let i = rng.below(bytes.count); bytes[i] = UInt8(truncatingIfNeeded: rng.next())
                case 2: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(bytes.count + 1))
                case 3: if bytes.count > 1 { bytes.remove(at: rng.below(bytes.count)) }
                case 4: bytes.removeLast(rng.below(bytes.count))
                default:
                    if bytes.count >= 4 {
                        let v = UInt32(truncatingIfNeeded: rng.below(3) == 0 ? rng.next() : UInt64(bytes.count - 4 + rng.below(5)) &- 2)
                        bytes.replaceSubrange(0..<4, with: [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)])
                    }
                }
                if bytes.isEmpty { break }
            }
            var buffer = ByteBuffer(bytes: bytes)
            let key: String
            do {
                var count = 0
                while let f = try reader.next(from: &buffer) {
                    if case let .message(m, size) = f {
                        // Memory stays bounded by the input: no element without its bytes.
                        if elements(m) > size { Issue.record("\(m) decoded from \(size) bytes") }
                    }
                    count += 1
                    if count > bytes.count { Issue.record("reader does not advance"); break }
                }
                key = buffer.readableBytes > 0 ? "incomplete" : "decoded"
            } catch {
                key = "\(error.code)"
            }
            outcomes[key, default: 0] += 1
        }
        // Every kind of outcome occurred (the mutations reach each branch).
        for k in ["decoded", "incomplete", "malformed frame", "frame too large", "unsupported protocol version"] {
            #expect(outcomes[k, default: 0] > 100, "\(outcomes)")
        }
    }
}

extension SplitMix64 {
    /// A value in 0..<n (n ≥ 1).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
}
