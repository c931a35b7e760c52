import ArborGGUF
import ArborKernels
import Foundation

/// A deliberately naive decoder in Double precision, written from the architectures' papers
/// and llama.cpp's graphs, independent of Arbor's optimised forward pass. Tests compare the two
/// on tiny models: if RoPE pairing, GQA, biases, norms, the window or the scaling were wrong in
/// either, they would disagree far beyond F16 rounding.
struct ReferenceDecoder {
    let file: GGUFFile
    let arch: String
    let d, layers, heads, kvHeads, hs, ff, vocab: Int
    let eps: Double
    let base: Double
    let window: Int
    let pattern: Int

    init(path: String) throws {
        file = try GGUFFile(path: path)
        arch = file.architecture
        d = try file.requireInt(.embeddingLength)
        layers = try file.requireInt(.blockCount)
        heads = try file.requireInt(.headCount)
        kvHeads = try file.requireInt(.headCountKV)
        hs = try file.int(.keyLength) ?? d / heads
        ff = try file.requireInt(.feedForwardLength)
        vocab = try file.tensorInfo("token_embd.weight").rowCount
        eps = try file.requireFloat(.layerNormRMSEpsilon)
        base = try file.float(.ropeFreqBase) ?? 10_000
        window = try file.int(.slidingWindow) ?? 0
        pattern = try file.int(.slidingWindowPattern) ?? 6
    }

    func tensor(_ name: String) -> [Double] {
        let info = try! file.tensorInfo(name)
        return dequantize(type: info.type, data: file.data(of: info).baseAddress!, count: info.elementCount).map(Double.init)
    }

    func tensorIfPresent(_ name: String) -> [Double]? { file.hasTensor(name) ? tensor(name) : nil }

    /// `W x` for a GGUF matrix `[columns, rows]`.
    func apply(_ w: [Double], _ x: [Double]) -> [Double] {
        let cols = x.count, rows = w.count / cols
        return (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + w[r * cols + $1] * x[$1] } }
    }

    func rms(_ x: [Double], _ w: [Double]) -> [Double] {
        let s = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + eps).squareRoot()
        return zip(x, w).map { $0 * s * $1 }
    }

    func rope(_ x: inout [Double], at offset: Int, position: Int, base: Double, neox: Bool) {
        let half = hs / 2
        for i in 0..<half {
            let theta = Double(position) * pow(base, -2.0 * Double(i) / Double(hs))
            let (a, b) = neox ? (offset + i, offset + i + half) : (offset + 2 * i, offset + 2 * i + 1)
            let x0 = x[a], x1 = x[b]
            x[a] = x0 * cos(theta) - x1 * sin(theta)
            x[b] = x0 * sin(theta) + x1 * cos(theta)
        }
    }

    /// Logits for every position of `tokens` (positions 0..<n, causal).
    func logits(_ tokens: [Int32]) -> [[Double]] {
        let gemma = arch == "gemma3"
        let neox = arch != "llama"
        let embd = tensor("token_embd.weight")
        var xs: [[Double]] = tokens.map { t in
            let row = Array(embd[(Int(t) * d)..<(Int(t) * d + d)])
            return gemma ? row.map { $0 * Double(Float(d).squareRoot()) } : row
        }
        let n = tokens.count
        for l in 0..<layers {
            let p = "blk.\(l)."
            let sliding = gemma && window > 0 && l % pattern < pattern - 1
            let layerBase = gemma && sliding ? 10_000 : base
            let wq = tensor(p + "attn_q.weight"), wk = tensor(p + "attn_k.weight"), wv = tensor(p + "attn_v.weight")
            let wo = tensor(p + "attn_output.weight")
            var qs: [[Double]] = [], ks: [[Double]] = [], vs: [[Double]] = []
            for i in 0..<n {
                let h = rms(xs[i], tensor(p + "attn_norm.weight"))
                var q = apply(wq, h), k = apply(wk, h), v = apply(wv, h)
                if let b = tensorIfPresent(p + "attn_q.bias") { q = zip(q, b).map(+) }
                if let b = tensorIfPresent(p + "attn_k.bias") { k = zip(k, b).map(+) }
                if let b = tensorIfPresent(p + "attn_v.bias") { v = zip(v, b).map(+) }
                if gemma {
                    let qn = tensor(p + "attn_q_norm.weight"), kn = tensor(p + "attn_k_norm.weight")
                    for hh in 0..<heads { q.replaceSubrange((hh * hs)..<((hh + 1) * hs), with: rms(Array(q[(hh * hs)..<((hh + 1) * hs)]), qn)) }
                    for hh in 0..<kvHeads { k.replaceSubrange((hh * hs)..<((hh + 1) * hs), with: rms(Array(k[(hh * hs)..<((hh + 1) * hs)]), kn)) }
                }
                for hh in 0..<heads { rope(&q, at: hh * hs, position: i, base: layerBase, neox: neox) }
                for hh in 0..<kvHeads { rope(&k, at: hh * hs, position: i, base: layerBase, neox: neox) }
                qs.append(q); ks.append(k); vs.append(v)
            }
            for i in 0..<n {
                var attn = [Double](repeating: 0, count: heads * hs)
                for hh in 0..<heads {
                    let kvh = hh / (heads / kvHeads)
                    let visible = (0...i).filter { !sliding || i - $0 < window }
                    let scores = visible.map { j in
                        (0..<hs).reduce(0.0) { $0 + qs[i][hh * hs + $1] * ks[j][kvh * hs + $1] } / Double(hs).squareRoot()
                    }
                    let m = scores.max()!
                    let e = scores.map { exp($0 - m) }
                    let z = e.reduce(0, +)
                    for (jj, j) in visible.enumerated() {
                        for c in 0..<hs { attn[hh * hs + c] += e[jj] / z * vs[j][kvh * hs + c] }
                    }
                }
                var o = apply(wo, attn)
                if gemma { o = rms(o, tensor(p + "post_attention_norm.weight")) }
                xs[i] = zip(xs[i], o).map(+)
                let h = rms(xs[i], tensor(p + "ffn_norm.weight"))
                let g = apply(tensor(p + "ffn_gate.weight"), h), u = apply(tensor(p + "ffn_up.weight"), h)
                let act = zip(g, u).map { g, u in
                    gemma ? 0.5 * g * (1 + tanh(0.7978845608 * g * (1 + 0.044715 * g * g))) * u : g / (1 + exp(-g)) * u
                }
                var f = apply(tensor(p + "ffn_down.weight"), act)
                if gemma { f = rms(f, tensor(p + "post_ffw_norm.weight")) }
                xs[i] = zip(xs[i], f).map(+)
            }
        }
        let out = tensorIfPresent("output.weight") ?? embd
        return xs.map { apply(out, rms($0, tensor("output_norm.weight"))) }
    }
}
