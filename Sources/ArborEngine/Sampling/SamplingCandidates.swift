/// One token under consideration: `value` holds its logit during filtering and its
/// probability after the final softmax.
struct SamplingCandidate: Sendable {
    var value: Float
    var id: Int32

    @inline(__always)
    init(value: Float, id: Int32) {
        self.value = value
        self.id = id
    }

    @inline(__always)
    init() {
        value = 0
        id = 0
    }

    /// Descending by value, ties broken by ascending id: a strict total order (ids are unique).
    @inline(__always)
    static func ranksBefore(_ a: SamplingCandidate, _ b: SamplingCandidate) -> Bool {
        a.value > b.value || (a.value == b.value && a.id < b.id)
    }

    @inline(__always)
    static func idBefore(_ a: SamplingCandidate, _ b: SamplingCandidate) -> Bool {
        a.id < b.id
    }
}

/// Allocation-free, deterministic in-place sorting and selection on candidate buffers.
/// (The standard library's sort may allocate a scratch buffer; these never do.)
enum CandidateOrder {
    /// Sorts `a[lo..<hi]` so that `before(a[i], a[i+1])` holds: introsort (median-of-three
    /// quicksort, heapsort fallback, insertion sort for short ranges).
    @inline(__always)
    static func sort(
        _ a: UnsafeMutableBufferPointer<SamplingCandidate>, _ lo: Int, _ hi: Int,
        by before: (SamplingCandidate, SamplingCandidate) -> Bool
    ) {
        let n = hi - lo
        guard n > 1 else { return }
        var depth = 2 * (Int.bitWidth - n.leadingZeroBitCount)
        introsort(a, lo, hi, &depth, before)
    }

    private static func introsort(
        _ a: UnsafeMutableBufferPointer<SamplingCandidate>, _ lo: Int, _ hi: Int, _ depth: inout Int,
        _ before: (SamplingCandidate, SamplingCandidate) -> Bool
    ) {
        var lo = lo
        var hi = hi
        while hi - lo > 16 {
            if depth == 0 {
                heapsort(a, lo, hi, before)
                return
            }
            depth -= 1
            // Median of three, moved into the middle slot.
            let mid = lo + (hi - 1 - lo) / 2
            if before(a[mid], a[lo]) { a.swapAt(mid, lo) }
            if before(a[hi - 1], a[mid]) {
                a.swapAt(hi - 1, mid)
                if before(a[mid], a[lo]) { a.swapAt(mid, lo) }
            }
            let pivot = a[mid]
            // Hoare partition: afterwards [lo, j] ⪯ pivot ⪯ [j+1, hi).
            var i = lo - 1
            var j = hi
            while true {
                repeat { i += 1 } while before(a[i], pivot)
                repeat { j -= 1 } while before(pivot, a[j])
                if i >= j { break }
                a.swapAt(i, j)
            }
            let split = j + 1
            // Recurse into the smaller half, loop on the larger one.
            if split - lo < hi - split {
                var d = depth
                introsort(a, lo, split, &d, before)
                lo = split
            } else {
                var d = depth
                introsort(a, split, hi, &d, before)
                hi = split
            }
        }
        insertionSort(a, lo, hi, before)
    }

    @inline(__always)
    private static func insertionSort(
        _ a: UnsafeMutableBufferPointer<SamplingCandidate>, _ lo: Int, _ hi: Int,
        _ before: (SamplingCandidate, SamplingCandidate) -> Bool
    ) {
        guard hi - lo > 1 else { return }
        for i in (lo + 1)..<hi {
            let x = a[i]
            var j = i
            while j > lo && before(x, a[j - 1]) {
                a[j] = a[j - 1]
                j -= 1
            }
            a[j] = x
        }
    }

    private static func heapsort(
        _ a: UnsafeMutableBufferPointer<SamplingCandidate>, _ lo: Int, _ hi: Int,
        _ before: (SamplingCandidate, SamplingCandidate) -> Bool
    ) {
        // Max-heap with respect to `before` (root = element that sorts last).
        let n = hi - lo
        var start = n / 2 - 1
        while start >= 0 {
            siftDown(a, lo, start, n) { x, y in before(x, y) }
            start -= 1
        }
        var end = n - 1
        while end > 0 {
            a.swapAt(lo, lo + end)
            siftDown(a, lo, 0, end) { x, y in before(x, y) }
            end -= 1
        }
    }

    /// Restores the heap property below `root` in the heap `a[base ..< base+count]`, where a
    /// parent must not satisfy `below(parent, child)`.
    @inline(__always)
    static func siftDown(
        _ a: UnsafeMutableBufferPointer<SamplingCandidate>, _ base: Int, _ root: Int, _ count: Int,
        _ below: (SamplingCandidate, SamplingCandidate) -> Bool
    ) {
        var parent = root
        let x = a[base + parent]
        while true {
            var child = 2 * parent + 1
            if child >= count { break }
            if child + 1 < count && below(a[base + child], a[base + child + 1]) { child += 1 }
            if !below(x, a[base + child]) { break }
            a[base + parent] = a[base + child]
            parent = child
        }
        a[base + parent] = x
    }

    /// Writes the `k` best tokens of `logits` (by ``SamplingCandidate/ranksBefore(_:_:)``:
    /// higher logit first, lower id on ties) into `out[0..<k]`, sorted best first.
    /// O(V log k) worst case, O(V + k log k · log(V/k)) typical; requires 0 < k ≤ V.
    static func selectTopK(
        _ logits: UnsafeBufferPointer<Float>, _ k: Int, into out: UnsafeMutableBufferPointer<SamplingCandidate>
    ) {
        let v = logits.count
        precondition(k > 0 && k <= v && out.count >= k)
        // Heap whose root is the worst kept candidate ("worse" = ranks after).
        let worseFirst: (SamplingCandidate, SamplingCandidate) -> Bool = { x, y in
            SamplingCandidate.ranksBefore(x, y)
        }
        for i in 0..<k { out[i] = SamplingCandidate(value: logits[i], id: Int32(truncatingIfNeeded: i)) }
        var start = k / 2 - 1
        while start >= 0 {
            siftDown(out, 0, start, k, worseFirst)
            start -= 1
        }
        var i = k
        while i < v {
            let x = logits[i]
            // Later ids lose ties, so only a strictly larger logit displaces the root.
            if x > out[0].value {
                out[0] = SamplingCandidate(value: x, id: Int32(truncatingIfNeeded: i))
                siftDown(out, 0, 0, k, worseFirst)
            }
            i += 1
        }
        // Heapsort extraction: repeatedly move the worst to the end → best first.
        var end = k - 1
        while end > 0 {
            out.swapAt(0, end)
            siftDown(out, 0, 0, end, worseFirst)
            end -= 1
        }
    }
}
