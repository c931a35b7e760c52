/// The frontier of best-first tree growth, shared by the statistical drafters.
///
/// A drafter that knows, for each candidate continuation, the probability that it is accepted
/// given its parent was (`confidence`) grows its tree by always adding the candidate with the
/// highest path score (the product of confidences from the root): that maximises the expected
/// number of accepted tokens for a given node count. Candidates with equal path scores come out
/// in the order they were pushed, so a drafter's own ranking of siblings (most frequent, then
/// most recent) decides ties and the result is deterministic.
///
/// A binary max-heap over plain structs: O(log F) per push and pop for F candidates, no
/// allocation once the buffer has grown.
struct DraftFrontier {
    struct Candidate {
        /// The drafter's handle for this continuation (a node of its own index).
        var source: Int32
        /// The index in the output tree of the parent, `-1` for a root.
        var parent: Int
        var token: Int32
        var confidence: Float
        var pathScore: Float
        /// Depth in the output tree (roots are 1).
        var depth: Int
        /// Push order, the tie-breaker.
        var order: Int
    }

    private var heap: [Candidate] = []
    private var pushed = 0

    var isEmpty: Bool { heap.isEmpty }

    mutating func removeAll() {
        heap.removeAll(keepingCapacity: true)
        pushed = 0
    }

    mutating func push(source: Int32, parent: Int, token: Int32, confidence: Float, pathScore: Float, depth: Int) {
        heap.append(Candidate(source: source, parent: parent, token: token, confidence: confidence,
                              pathScore: pathScore, depth: depth, order: pushed))
        pushed += 1
        var i = heap.count - 1
        while i > 0 {
            let up = (i - 1) / 2
            guard Self.before(heap[i], heap[up]) else { break }
            heap.swapAt(i, up)
            i = up
        }
    }

    mutating func popBest() -> Candidate? {
        guard let best = heap.first else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count, Self.before(heap[l], heap[m]) { m = l }
                if r < heap.count, Self.before(heap[r], heap[m]) { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return best
    }

    @inline(__always)
    private static func before(_ a: Candidate, _ b: Candidate) -> Bool {
        a.pathScore > b.pathScore || (a.pathScore == b.pathScore && a.order < b.order)
    }
}
