import ArborGGUF
import ArborKernels
import CArborKernels
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What distinguishes one decoder architecture from another, for the shared forward pass.
struct DecoderTraits: Sendable {
    enum Activation: Sendable { case swiglu, geglu }
    /// Pairs `(i, i + d/2)` rotate together (NeoX/Qwen/Gemma) instead of `(2i, 2i+1)` (llama).
    var neoxRope: Bool
    var activation: Activation
    /// Multiply token embeddings by this (Gemma: √d_model).
    var embeddingScale: Float?
    /// Multiply queries by this before attention (Gemma 3), else scale the scores by 1/√d.
    var queryScale: Float?
}

/// One transformer block's weights. Optional parts exist only in some architectures.
struct DecoderLayer: @unchecked Sendable {
    var attentionNorm: [Float]          // [d]
    var wq, wk, wv, wo: QuantizedMatrix
    var qBias, kBias, vBias: [Float]?   // [qDim], [kvDim], [vDim]
    var qNorm, kNorm: [Float]?          // [headSize] (Gemma 3)
    var postAttentionNorm: [Float]?     // [d] (Gemma 3)
    var ffnNorm: [Float]                // [d]
    var gate, up, down: QuantizedMatrix
    var postFFNNorm: [Float]?           // [d] (Gemma 3)
}

/// Loads the tensors of a decoder with llama.cpp's tensor names, checking every shape.
struct DecoderWeightLoader {
    let file: GGUFFile
    let config: ModelConfiguration

    func matrix(_ name: String, columns: Int, rows: Int) throws(ModelError) -> QuantizedMatrix {
        let info: GGUFTensorInfo
        do { info = try file.tensorInfo(name) } catch { throw .file(error) }
        guard info.dims.count == 2, info.dims[0] == columns, info.dims[1] == rows else {
            throw .badTensor(path: file.path, tensor: name, reason: "shape \(info.dims), expected [\(columns), \(rows)]")
        }
        do { return try QuantizedMatrix(file: file, info: info) } catch { throw .file(error) }
    }

    func vector(_ name: String, count: Int) throws(ModelError) -> [Float] {
        let info: GGUFTensorInfo
        do { info = try file.tensorInfo(name) } catch { throw .file(error) }
        guard info.elementCount == count else {
            throw .badTensor(path: file.path, tensor: name, reason: "\(info.elementCount) elements, expected \(count)")
        }
        guard info.type == .f32 || info.type == .f16 || info.type == .bf16 else {
            throw .badTensor(path: file.path, tensor: name, reason: "type \(info.type), expected a float vector")
        }
        return dequantize(type: info.type, data: file.data(of: info).baseAddress!, count: count)
    }

    func optionalVector(_ name: String, count: Int) throws(ModelError) -> [Float]? {
        file.hasTensor(name) ? try vector(name, count: count) : nil
    }

    /// The layers with the tensors every supported architecture shares.
    func layers(withBiases: Bool, withQKNorm: Bool, withPostNorms: Bool) throws(ModelError) -> [DecoderLayer] {
        let c = config
        var out: [DecoderLayer] = []
        for i in 0..<c.blockCount {
            let p = "blk.\(i)."
            out.append(DecoderLayer(
                attentionNorm: try vector(p + "attn_norm.weight", count: c.embeddingLength),
                wq: try matrix(p + "attn_q.weight", columns: c.embeddingLength, rows: c.queryDimension).interleavedForMatmul(),
                wk: try matrix(p + "attn_k.weight", columns: c.embeddingLength, rows: c.keyValueDimension).interleavedForMatmul(),
                wv: try matrix(p + "attn_v.weight", columns: c.embeddingLength, rows: c.valueDimension).interleavedForMatmul(),
                wo: try matrix(p + "attn_output.weight", columns: c.headCount * c.valueLength, rows: c.embeddingLength).interleavedForMatmul(),
                qBias: withBiases ? try optionalVector(p + "attn_q.bias", count: c.queryDimension) : nil,
                kBias: withBiases ? try optionalVector(p + "attn_k.bias", count: c.keyValueDimension) : nil,
                vBias: withBiases ? try optionalVector(p + "attn_v.bias", count: c.valueDimension) : nil,
                qNorm: withQKNorm ? try vector(p + "attn_q_norm.weight", count: c.keyLength) : nil,
                kNorm: withQKNorm ? try vector(p + "attn_k_norm.weight", count: c.keyLength) : nil,
                postAttentionNorm: withPostNorms ? try vector(p + "post_attention_norm.weight", count: c.embeddingLength) : nil,
                ffnNorm: try vector(p + "ffn_norm.weight", count: c.embeddingLength),
                gate: try matrix(p + "ffn_gate.weight", columns: c.embeddingLength, rows: c.feedForwardLength).interleavedForMatmul(),
                up: try matrix(p + "ffn_up.weight", columns: c.embeddingLength, rows: c.feedForwardLength).interleavedForMatmul(),
                down: try matrix(p + "ffn_down.weight", columns: c.feedForwardLength, rows: c.embeddingLength).interleavedForMatmul(),
                postFFNNorm: withPostNorms ? try vector(p + "post_ffw_norm.weight", count: c.embeddingLength) : nil
            ))
        }
        return out
    }

    /// The whole model: embeddings, layers, final norm and output, with these traits.
    func model(traits: DecoderTraits, biases: Bool, qkNorm: Bool, postNorms: Bool, threads: Int) throws(ModelError) -> DecoderModel {
        DecoderModel(
            file: file, configuration: config, traits: traits,
            tokenEmbedding: try matrix("token_embd.weight", columns: config.embeddingLength, rows: config.vocabularySize),
            output: try outputForMatmul(),
            outputNorm: try vector("output_norm.weight", count: config.embeddingLength),
            layers: try layers(withBiases: biases, withQKNorm: qkNorm, withPostNorms: postNorms),
            threads: threads)
    }

    /// The output projection, interleaved for the x8 kernels when Q4_K. (A Q6_K copy would
    /// keep its rows for single tokens, doubling the largest matrix for the verifier's all-logits
    /// batches only.)
    func outputForMatmul() throws(ModelError) -> QuantizedMatrix {
        let m = try outputMatrix()
        return m.type == .q6_K ? m : m.interleavedForMatmul()
    }

    /// `output.weight`, or the token embedding when the model ties them.
    func outputMatrix() throws(ModelError) -> QuantizedMatrix {
        let name = file.hasTensor("output.weight") ? "output.weight" : "token_embd.weight"
        return try matrix(name, columns: config.embeddingLength, rows: config.vocabularySize)
    }
}

/// A decoder-only transformer run on the CPU: the forward pass shared by every architecture.
///
/// One forward runs at a time per model (its scratch buffers are reused); calls are serialised.
public final class DecoderModel: LanguageModel, @unchecked Sendable {
    public let configuration: ModelConfiguration
    let traits: DecoderTraits
    /// Keeps the memory mapping the weight views point into alive.
    let file: GGUFFile
    let tokenEmbedding: QuantizedMatrix  // [vocab, d]
    let output: QuantizedMatrix          // [vocab, d]
    let outputNorm: [Float]              // [d]
    /// VocabTrim: the vocabulary ids the output rows stand for, when the head was trimmed to
    /// some of them (every other token's logit is -inf); nil for the whole vocabulary.
    public let outputTokens: [Int32]?
    /// Of a trimmed model: the whole head (for `includeOutputTokens`), and the rows of the tokens
    /// it includes now beside the trimmed ones.
    private let fullOutput: QuantizedMatrix?
    private var extraOutput: (tokens: [Int32], rows: QuantizedMatrix)?
    let layers: [DecoderLayer]
    public let pool: ThreadPool
    private let lock = Mutex(())
    private var workspace = Workspace()

    init(file: GGUFFile, configuration: ModelConfiguration, traits: DecoderTraits,
         tokenEmbedding: QuantizedMatrix, output: QuantizedMatrix, outputNorm: [Float],
         layers: [DecoderLayer], threads: Int, outputTokens: [Int32]? = nil, fullOutput: QuantizedMatrix? = nil) {
        self.file = file
        self.outputTokens = outputTokens
        self.fullOutput = fullOutput
        self.configuration = configuration
        self.traits = traits
        self.tokenEmbedding = tokenEmbedding
        self.output = output
        self.outputNorm = outputNorm
        self.layers = layers
        self.pool = ThreadPool(threads: threads)
    }

    /// Bytes of weights read for one token (every matrix once, the embedding row aside).
    public var weightBytesPerToken: Int {
        layers.reduce(output.rowBytes * output.rows) { sum, l in
            sum + [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down].reduce(0) { $0 + $1.rowBytes * $1.rows }
        }
    }

    /// A copy of this model whose output head scores only `tokens` (VocabTrim, for a draft
    /// model): the head is usually the largest matrix a small model reads per token, and a
    /// drafter rarely needs the rare rows. Every other token gets logit -inf, so probabilities
    /// are renormalised over the kept tokens. The copy shares the weights (not the head) and has
    /// its own threads and scratch.
    public func trimmingOutput(to tokens: [Int32]) throws(ModelError) -> DecoderModel {
        let v = configuration.vocabularySize
        var kept = Array(Set(tokens)).sorted()
        guard !kept.isEmpty, kept.allSatisfy({ $0 >= 0 && Int($0) < v }) else {
            throw .invalidBatch("a trimmed vocabulary needs 1…\(v) token ids inside the vocabulary")
        }
        // Whole groups of 8 rows keep the interleaved kernels (a repeated row scores the same token).
        while kept.count % 8 != 0 { kept.append(kept[kept.count - 1]) }
        return DecoderModel(file: file, configuration: configuration, traits: traits, tokenEmbedding: tokenEmbedding,
                            output: output.selectingRows(kept.map { Int($0) }), outputNorm: outputNorm, layers: layers,
                            threads: pool.threads, outputTokens: kept, fullOutput: output)
    }

    /// A trimmed model also scores `tokens` (those not kept already) until the next call: a
    /// drafter includes its prompt's tokens, which a continuation often copies (a function's
    /// name, a rare word) even when they are rare in general. No effect on an untrimmed model.
    public func includeOutputTokens(_ tokens: some Sequence<Int32>) {
        guard let kept = outputTokens, let fullOutput else { return }
        let keptSet = Set(kept)
        let extra = Array(Set(tokens.filter { $0 >= 0 && Int($0) < configuration.vocabularySize && !keptSet.contains($0) })).sorted()
        let rows = extra.isEmpty ? nil : fullOutput.selectingRows(extra.map { Int($0) })
        lock.withLock { _ in extraOutput = rows.map { (extra, $0) } }
    }

    public func makeCache(capacity: Int) -> any KVCache {
        StandardKVCache(
            layerCount: configuration.blockCount, keyDimension: configuration.keyValueDimension,
            valueDimension: configuration.valueDimension, capacity: capacity, limit: configuration.contextLength)
    }

    public func forward(_ batch: ForwardBatch, cache anyCache: any KVCache) throws(ModelError) -> Logits {
        try forward(segments: [(batch, anyCache)])[0]
    }

    /// Scores several sequences in one pass: each segment is a batch against its own cache (for
    /// example the draft trees of several sessions). Every matrix is read once for all their
    /// tokens; attention runs per segment on its own cache. Each token's logits are bit-for-bit
    /// those of `forward(_:cache:)` on its segment alone (every operation is per token, in a
    /// fixed order).
    public func forward(segments: [(batch: ForwardBatch, cache: any KVCache)]) throws(ModelError) -> [Logits] {
        let c = configuration
        guard !segments.isEmpty else { throw .invalidBatch("no segments") }
        var prepared: [Segment] = []
        var offset = 0, logitOffset = 0
        for (batch, anyCache) in segments {
            let n = batch.tokens.count
            guard n > 0 else { throw .invalidBatch("empty batch") }
            guard batch.positions.count == n else {
                throw .invalidBatch("\(batch.positions.count) positions for \(n) tokens")
            }
            for t in batch.tokens where t < 0 || Int(t) >= c.vocabularySize {
                throw .tokenOutOfRange(token: t, vocabularySize: c.vocabularySize)
            }
            guard let cache = anyCache as? StandardKVCache,
                  cache.layerCount == c.blockCount, cache.keyDimension == c.keyValueDimension,
                  cache.valueDimension == c.valueDimension
            else { throw .wrongCache("the cache was not made by this model") }
            guard !prepared.contains(where: { $0.cache === cache }) else { throw .wrongCache("two segments share one cache") }
            let visible = try batch.mask.visibleIndices(count: n)
            let logitRows = batch.logitIndices ?? Array(0..<n)
            guard zip(logitRows, logitRows.dropFirst()).allSatisfy({ $0 < $1 }),
                  logitRows.allSatisfy({ $0 >= 0 && $0 < n }) else {
                throw .invalidBatch("logit indices must be ascending batch indices")
            }
            prepared.append(Segment(batch: batch, cache: cache, visible: visible, logitRows: logitRows, base: 0,
                                    offset: offset, logitOffset: logitOffset))
            offset += n
            logitOffset += logitRows.count
        }
        return try lock.withLock { _ throws(ModelError) in
            for i in prepared.indices {
                let base = prepared[i].cache.count
                if let cv = prepared[i].batch.cacheVisibility {
                    let n = prepared[i].batch.tokens.count
                    guard cv.sharedPrefix >= 0, cv.sharedPrefix <= base, cv.extraSlots.count == n else {
                        throw .invalidBatch("cache visibility: shared prefix \(cv.sharedPrefix) of \(base) entries, \(cv.extraSlots.count) slot lists for \(n) tokens")
                    }
                    for row in cv.extraSlots {
                        guard zip(row, row.dropFirst()).allSatisfy({ $0 < $1 }), row.allSatisfy({ $0 >= cv.sharedPrefix && $0 < base }) else {
                            throw .invalidBatch("cache visibility: slots \(row) must ascend within \(cv.sharedPrefix)..<\(base)")
                        }
                    }
                }
                prepared[i].base = base
            }
            // Append only once every segment is valid, so a refused call changes no cache.
            for i in prepared.indices {
                do throws(ModelError) {
                    try prepared[i].cache.append(positions: prepared[i].batch.positions)
                } catch {
                    for j in 0..<i { prepared[j].cache.truncate(to: prepared[j].base) }
                    throw error
                }
            }
            workspace.prepare(config: c, batch: offset, contextCount: prepared.map(\.cache.count).max()!, logitRows: logitOffset)
            let values = run(prepared, tokens: offset, logitRows: logitOffset)
            let v = c.vocabularySize
            return prepared.map { s in
                Logits(vocabularySize: v, batchIndices: s.logitRows,
                       values: Array(values[(s.logitOffset * v)..<((s.logitOffset + s.logitRows.count) * v)]))
            }
        }
    }

    /// One sequence of a (possibly multi-sequence) forward pass.
    struct Segment {
        let batch: ForwardBatch
        let cache: StandardKVCache
        let visible: [[Int]]
        let logitRows: [Int]
        /// Cache entries before this call.
        var base: Int
        /// First row of this segment in the pass's activations.
        let offset: Int
        /// First row of this segment's logits.
        let logitOffset: Int
    }

    // MARK: The forward pass

    private func run(_ segments: [Segment], tokens n: Int, logitRows logitCount: Int) -> [Float] {
        let c = configuration
        let ws = workspace
        let d = c.embeddingLength
        let x = ws.x, h = ws.h

        // Embeddings [n, d] and RoPE tables per token [n, ropeDims/2, 2], for the global and the
        // sliding-window base.
        let ropeDims = c.ropeDimensionCount
        for s in segments {
            for (i, token) in s.batch.tokens.enumerated() {
                let b = s.offset + i
                dequantizeRow(tokenEmbedding, row: Int(token), into: x + b * d)
                if let scale = traits.embeddingScale {
                    for j in 0..<d { x[b * d + j] *= scale }
                }
                TransformerOps.ropeTable(position: s.batch.positions[i], dims: ropeDims, base: c.ropeFreqBase, into: ws.ropeGlobal + b * ropeDims)
                TransformerOps.ropeTable(position: s.batch.positions[i], dims: ropeDims, base: c.ropeFreqBaseSWA, into: ws.ropeLocal + b * ropeDims)
            }
        }

        for (l, layer) in layers.enumerated() {
            // Attention block: the projections over all rows, attention per segment.
            for b in 0..<n {
                TransformerOps.rmsNorm(x + b * d, layer.attentionNorm, h + b * d, count: d, eps: c.rmsEpsilon)
            }
            matmul(group: [layer.wq, layer.wk, layer.wv], h, batch: n, [ws.q, ws.k, ws.v], scratch: ws.groupScratch, pool: pool)
            for s in segments {
                prepareQKV(layer: layer, layerIndex: l, segment: s)
                attention(layerIndex: l, segment: s)
            }
            matmul(layer.wo, ws.attn, batch: n, h, scratch: ws.matmulScratch, pool: pool)
            if let post = layer.postAttentionNorm {
                for b in 0..<n { TransformerOps.rmsNorm(h + b * d, post, h + b * d, count: d, eps: c.rmsEpsilon) }
            }
            for i in 0..<(n * d) { x[i] += h[i] }

            // Feed-forward block.
            for b in 0..<n {
                TransformerOps.rmsNorm(x + b * d, layer.ffnNorm, h + b * d, count: d, eps: c.rmsEpsilon)
            }
            matmul(group: [layer.gate, layer.up], h, batch: n, [ws.gate, ws.up], scratch: ws.groupScratch, pool: pool)
            // The gate (an exp or table lookup per element: 72 K of them per layer for 8 tokens of
            // the 1.5B target) is element-wise, so it is split over the pool like a matmul.
            let ff = c.feedForwardLength, activation = traits.activation
            pool.parallelFor(n * ff, grain: 4096) { r in
                switch activation {
                case .swiglu: TransformerOps.swiglu(ws.gate + r.lowerBound, ws.up + r.lowerBound, count: r.count)
                case .geglu: TransformerOps.geglu(ws.gate + r.lowerBound, ws.up + r.lowerBound, count: r.count)
                }
            }
            matmul(layer.down, ws.gate, batch: n, h, scratch: ws.matmulScratch, pool: pool)
            if let post = layer.postFFNNorm {
                for b in 0..<n { TransformerOps.rmsNorm(h + b * d, post, h + b * d, count: d, eps: c.rmsEpsilon) }
            }
            for i in 0..<(n * d) { x[i] += h[i] }
        }

        // Final norm on the rows whose logits are wanted, then the output projection.
        for s in segments {
            for (r, b) in s.logitRows.enumerated() {
                TransformerOps.rmsNorm(x + (s.offset + b) * d, outputNorm, h + (s.logitOffset + r) * d, count: d, eps: c.rmsEpsilon)
            }
        }
        if let kept = outputTokens {
            // Trimmed head: score the kept rows, then place them in a vocabulary of -inf.
            let k = output.rows, v = c.vocabularySize
            var compact = [Float](repeating: 0, count: logitCount * k)
            compact.withUnsafeMutableBufferPointer { out in
                matmul(output, h, batch: logitCount, out.baseAddress!, scratch: ws.matmulScratch, pool: pool)
            }
            var logits = [Float](repeating: -.infinity, count: logitCount * v)
            for b in 0..<logitCount {
                for (i, t) in kept.enumerated() { logits[b * v + Int(t)] = compact[b * k + i] }
            }
            if let (tokens, rows) = extraOutput {
                let e = rows.rows
                var more = [Float](repeating: 0, count: logitCount * e)
                more.withUnsafeMutableBufferPointer { out in
                    matmul(rows, h, batch: logitCount, out.baseAddress!, scratch: ws.matmulScratch, pool: pool)
                }
                for b in 0..<logitCount {
                    for (i, t) in tokens.enumerated() { logits[b * v + Int(t)] = more[b * e + i] }
                }
            }
            return logits
        }
        var logits = [Float](repeating: 0, count: logitCount * c.vocabularySize)
        logits.withUnsafeMutableBufferPointer { out in
            matmul(output, h, batch: logitCount, out.baseAddress!, scratch: ws.matmulScratch, pool: pool)
        }
        return logits
    }

    /// Biases, Q/K norms, RoPE, the query scale; then keys and values into the cache as F16.
    private func prepareQKV(layer: DecoderLayer, layerIndex l: Int, segment s: Segment) {
        let n = s.batch.tokens.count, cache = s.cache, base = s.base
        let c = configuration
        let ws = workspace
        let hs = c.keyLength, qDim = c.queryDimension, kvDim = c.keyValueDimension, vDim = c.valueDimension
        let ropeDims = c.ropeDimensionCount
        let table = c.isSlidingWindowLayer(l) ? ws.ropeLocal : ws.ropeGlobal
        for b in 0..<n {
            let row = s.offset + b
            let q = ws.q + row * qDim, k = ws.k + row * kvDim, v = ws.v + row * vDim
            if let bias = layer.qBias { for i in 0..<qDim { q[i] += bias[i] } }
            if let bias = layer.kBias { for i in 0..<kvDim { k[i] += bias[i] } }
            if let bias = layer.vBias { for i in 0..<vDim { v[i] += bias[i] } }
            if let norm = layer.qNorm {
                for head in 0..<c.headCount { TransformerOps.rmsNorm(q + head * hs, norm, q + head * hs, count: hs, eps: c.rmsEpsilon) }
            }
            if let norm = layer.kNorm {
                for head in 0..<c.headCountKV { TransformerOps.rmsNorm(k + head * hs, norm, k + head * hs, count: hs, eps: c.rmsEpsilon) }
            }
            let cs = table + row * ropeDims
            for head in 0..<c.headCount { TransformerOps.rope(q + head * hs, dims: ropeDims, neox: traits.neoxRope, cosSin: cs) }
            for head in 0..<c.headCountKV { TransformerOps.rope(k + head * hs, dims: ropeDims, neox: traits.neoxRope, cosSin: cs) }
            // Queries are rounded to F16 like the reference (it multiplies them with F16 keys).
            let qScale = traits.queryScale ?? 1
            for i in 0..<qDim { q[i] = Float(Float16(q[i] * qScale)) }
            let slot = base + b
            let kc = cache.keys[l] + slot * kvDim, vc = cache.values[l] + slot * vDim
            for i in 0..<kvDim { kc[i] = Float16(k[i]) }
            for i in 0..<vDim { vc[i] = Float16(v[i]) }
        }
    }

    /// At most this many tokens share one attention work item.
    static let attentionTokensPerItem = 8

    /// Scaled dot-product attention for every (token, head), in parallel, with llama.cpp's
    /// flash-attention numerics in fixed segments and chunks (see `arbor_attend`). Each token sees the
    /// committed entries `0..<base` (within the sliding window where it applies) and the batch
    /// entries its mask allows, always in slot order: a token scored inside a tree visits the
    /// same keys in the same order as when decoded alone on its path, so its result is
    /// bit-identical.
    ///
    /// When a batch has too few (token, key/value head) pairs to keep the threads busy and its
    /// lists are long (decoding after a long prompt), the segments of one list go to different
    /// threads and are merged in order afterwards (flash-decoding); the kernel's fixed segments
    /// make that split invisible in the result.
    private func attention(layerIndex l: Int, segment s: Segment) {
        let batch = s.batch, visible = s.visible, cache = s.cache, base = s.base
        let c = configuration
        let ws = workspace
        let n = batch.tokens.count
        let hs = c.keyLength, vs = c.valueLength
        let kvDim = c.keyValueDimension, vDim = c.valueDimension
        let groups = c.headCount / c.headCountKV
        let window = c.isSlidingWindowLayer(l) ? c.slidingWindow : Int.max
        let scoreScale: Float = traits.queryScale == nil ? 1 / Float(hs).squareRoot() : 1
        let keys = cache.keys[l], values = cache.values[l], positions = cache.positions
        let stride = ws.scoreStride
        // Each token's slot list, shared by all key/value heads.
        pool.parallelFor(n) { b in
            let slots = ws.slots + b * stride
            let pos = Int(batch.positions[b])
            var m = 0
            let shared = batch.cacheVisibility?.sharedPrefix ?? base
            if window == Int.max {
                for j in 0..<shared { slots[m] = Int32(j); m += 1 }
            } else {
                for j in 0..<shared where pos - Int(positions[j]) < window { slots[m] = Int32(j); m += 1 }
            }
            if let extra = batch.cacheVisibility?.extraSlots[b] {
                for j in extra where pos - Int(positions[j]) < window {
                    slots[m] = Int32(j); m += 1
                }
            }
            for v in visible[b] where pos - Int(batch.positions[v]) < window {
                slots[m] = Int32(base + v); m += 1
            }
            ws.slotCounts[b] = Int64(m)
        }
        let items = n * c.headCountKV
        let stateSize = Int(arbor_attend_state_size(Int64(groups), Int64(vs)))
        let segmentLength = Int(ARBOR_ATTEND_SEGMENT)
        let segments = (Int((0..<n).map { ws.slotCounts[$0] }.max()!) + segmentLength - 1) / segmentLength
        // Work is per key/value head: the `groups` query heads sharing it (GQA) are computed
        // together, so each F16 key and value row is widened once for all of them.
        func query(_ item: Int) -> UnsafePointer<Float> {
            let b = item / c.headCountKV, kvHead = item % c.headCountKV
            return UnsafePointer(ws.q + (s.offset + b) * c.queryDimension + kvHead * groups * hs)
        }
        func output(_ item: Int) -> UnsafeMutablePointer<Float> {
            let b = item / c.headCountKV, kvHead = item % c.headCountKV
            return ws.attn + (s.offset + b) * (c.headCount * vs) + kvHead * groups * vs
        }
        let kvKeys = { (kvHead: Int) in UnsafeRawPointer(keys + kvHead * hs).assumingMemoryBound(to: UInt16.self) }
        let kvValues = { (kvHead: Int) in UnsafeRawPointer(values + kvHead * vs).assumingMemoryBound(to: UInt16.self) }
        // Without a window every list starts with the same cache slots 0..<commonPrefix; only
        // what follows needs comparing to find the prefix a group of tokens shares.
        let commonPrefix = window == Int.max ? (batch.cacheVisibility?.sharedPrefix ?? base) : 0
        if segments <= 1 || items >= 2 * pool.threads {
            // Several consecutive tokens per work item when there are plenty: the cache rows they
            // all see are widened from F16 once for all of them (prompts; large trees).
            let perItem = max(1, min(Self.attentionTokensPerItem, items / (4 * pool.threads)))
            let tokenGroups = (n + perItem - 1) / perItem
            pool.parallelFor(tokenGroups * c.headCountKV) { item in
                let kvHead = item / tokenGroups, first = (item % tokenGroups) * perItem
                let t = min(perItem, n - first)
                let lists = ws.slots + first * stride
                var shared = Int(ws.slotCounts[first])
                for i in 1..<t {
                    let other = lists + i * stride
                    var j = min(commonPrefix, shared)
                    while j < shared, other[j] == lists[j] { j += 1 }
                    shared = min(j, Int(ws.slotCounts[first + i]))
                }
                arbor_attend_many(
                    Int64(t), query(first * c.headCountKV + kvHead), Int64(c.queryDimension), Int64(groups),
                    kvKeys(kvHead), Int64(kvDim), kvValues(kvHead), Int64(vDim),
                    lists, Int64(stride), ws.slotCounts + first, Int64(shared), Int64(hs), Int64(vs), scoreScale,
                    ws.attendScratch + item * perItem * 2 * stateSize, output(first * c.headCountKV + kvHead),
                    Int64(c.headCount * vs))
            }
            return
        }
        let partials = ws.partials(count: items * segments * stateSize)
        pool.parallelFor(items * segments) { work in
            let item = work / segments, k = work % segments
            let b = item / c.headCountKV, kvHead = item % c.headCountKV
            let start = k * segmentLength, m = Int(ws.slotCounts[b])
            guard start < m || k == 0 else { return }
            arbor_attend_partial(
                query(item), Int64(groups), kvKeys(kvHead), Int64(kvDim), kvValues(kvHead), Int64(vDim),
                ws.slots + b * stride + start, Int64(m - start), Int64(hs), Int64(vs), scoreScale,
                partials + work * stateSize)
        }
        pool.parallelFor(items) { item in
            let b = item / c.headCountKV
            let state = partials + item * segments * stateSize
            let used = max(1, (Int(ws.slotCounts[b]) + segmentLength - 1) / segmentLength)
            for k in 1..<used { arbor_attend_merge(Int64(groups), Int64(vs), state, state + k * stateSize) }
            arbor_attend_finish(Int64(groups), Int64(vs), state, output(item))
        }
    }
}

/// Reusable buffers of one model's forward pass, grown on demand.
final class Workspace: @unchecked Sendable {
    private(set) var batchCapacity = 0
    private(set) var scoreStride = 0
    private var storage: [UnsafeMutablePointer<Float>] = []
    var x = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, d]
    var h = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, max(d, qDim)]
    var q = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, qDim]
    var k = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, kvDim]
    var v = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, vDim]
    var attn = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, heads × valueLength]
    var gate = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, ff]
    var up = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, ff]
    var ropeGlobal = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, ropeDims]
    var ropeLocal = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n, ropeDims]
    var attendScratch = UnsafeMutablePointer<Float>.allocate(capacity: 1)  // [n × kvHeads, 2 states]
    var slots = UnsafeMutablePointer<Int32>.allocate(capacity: 1)  // [n, scoreStride]
    var slotCounts = UnsafeMutablePointer<Int64>.allocate(capacity: 1)  // [n]
    private var partialStates = UnsafeMutablePointer<Float>.allocate(capacity: 1)
    private var partialCapacity = 1
    let matmulScratch = MatmulScratch()
    let groupScratch = MatmulGroupScratch()

    init() {
        storage = [x, h, q, k, v, attn, gate, up, ropeGlobal, ropeLocal]
    }

    func prepare(config c: ModelConfiguration, batch n: Int, contextCount: Int, logitRows: Int) {
        let rows = max(n, logitRows)
        if rows > batchCapacity || contextCount > scoreStride {
            release()
            batchCapacity = max(rows, batchCapacity)
            scoreStride = max(contextCount, scoreStride * 2, 256)
            func alloc(_ width: Int) -> UnsafeMutablePointer<Float> {
                let p = UnsafeMutablePointer<Float>.allocate(capacity: batchCapacity * width)
                storage.append(p)
                return p
            }
            x = alloc(c.embeddingLength)
            h = alloc(max(c.embeddingLength, c.headCount * c.valueLength))
            q = alloc(c.queryDimension)
            k = alloc(c.keyValueDimension)
            v = alloc(c.valueDimension)
            attn = alloc(c.headCount * c.valueLength)
            gate = alloc(c.feedForwardLength)
            up = alloc(c.feedForwardLength)
            ropeGlobal = alloc(c.ropeDimensionCount)
            ropeLocal = alloc(c.ropeDimensionCount)
            slots.deallocate()
            slots = .allocate(capacity: batchCapacity * scoreStride)
            slotCounts.deallocate()
            slotCounts = .allocate(capacity: batchCapacity)
            let state = Int(arbor_attend_state_size(Int64(c.headCount / c.headCountKV), Int64(c.valueLength)))
            attendScratch.deallocate()
            attendScratch = .allocate(capacity: (batchCapacity + DecoderModel.attentionTokensPerItem) * c.headCountKV * 2 * state)
        }
    }

    private func release() {
        storage.forEach { $0.deallocate() }
        storage.removeAll()
    }

    deinit {
        release()
        slots.deallocate()
        slotCounts.deallocate()
        attendScratch.deallocate()
        partialStates.deallocate()
    }

    /// Segment states of split attention, grown on demand.
    func partials(count: Int) -> UnsafeMutablePointer<Float> {
        if count > partialCapacity {
            partialStates.deallocate()
            partialCapacity = max(count, partialCapacity * 2)
            partialStates = .allocate(capacity: partialCapacity)
        }
        return partialStates
    }
}
