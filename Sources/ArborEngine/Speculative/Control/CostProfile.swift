/// What the policy has learned about one pairing of device, drafter, server and target: the
/// inputs of its cost model. Plain data, `Codable`, so it outlives a request in memory and a
/// process in the profile store; updated online from every `RoundRecord`.
public struct CostProfile: Codable, Sendable, Equatable {
    /// Bumped when the meaning of a field changes; a stored profile of another version is ignored.
    public static let currentVersion = 1
    public var version = CostProfile.currentVersion

    /// `targetMilliseconds[b]`: smoothed target compute to score b tokens (pending + tree); 0
    /// until measured. Indexed up to `maxBatch`.
    public var targetMilliseconds: [Double]
    /// Rounds measured per batch size.
    public var targetSamples: [Int]
    /// Smoothed server time per round turning logits into verdicts.
    public var samplingMilliseconds = 0.0
    /// Target energy per millisecond of target compute (J/ms), from the verifier's reports.
    public var targetJoulesPerMillisecond = 0.0
    public var targetEnergySource: EnergySource?
    /// Round overhead (the fit's intercept: round trip, queue, framing) and uplink time per node
    /// (its slope): round trip − server time against nodes sent. Zero for a local target.
    public var network = LinearFit()
    /// Application bytes up against nodes sent, and down against nodes accepted.
    public var bytesUp = LinearFit()
    public var bytesDown = LinearFit()
    /// `draftStepMilliseconds[w-1]`: smoothed draft time per depth step at width w (catch-up
    /// excluded); 0 until measured.
    public var draftStepMilliseconds: [Double] = []
    /// Draft energy per depth step at width w, J.
    public var draftStepJoules: [Double] = []
    public var draftEnergySource: EnergySource?
    /// Time and energy per token for a model drafter to read committed tokens it has not seen
    /// (after plain or run-ahead rounds), smoothed; 0 until measured.
    public var catchUpMillisecondsPerToken = 0.0
    public var catchUpJoulesPerToken = 0.0
    /// Acceptance calibration: per decile of the drafter's confidence, how often an offered node
    /// (its parent accepted) was accepted.
    public var calibrationAccepted = [Double](repeating: 0, count: 10)
    public var calibrationOffered = [Double](repeating: 0, count: 10)
    /// Per depth: smoothed probability that depth d is accepted given depth d − 1 was.
    public var depthAcceptance: [Double] = []
    /// Per depth: rounds that offered depth d (few: the estimate is their mean with the prior).
    public var depthObservations: [Int] = []
    /// Measured ÷ predicted round time, smoothed (AutoDraft's running correction of its model).
    public var speedCorrection = 1.0
    /// With proactive drafting: the smoothed share of trees drafted ahead (during a verification)
    /// that the next round used (its drafting then cost no wall time), and how many were seen.
    public var aheadHitRate = 0.0
    public var aheadObservations = 0
    /// Server time per token of a run-ahead round (compute and sampling, summed over the round
    /// and divided by its tokens), smoothed; 0 until measured. Learned apart from the batch-1
    /// time: a server may speculate inside a run-ahead (`arbor serve --decode-drafter`), and
    /// then a token costs less than a plain pass.
    public var runAheadMillisecondsPerToken = 0.0
    /// Rounds learned from.
    public var rounds = 0

    public static let maxBatch = 257

    public init() {
        targetMilliseconds = [Double](repeating: 0, count: Self.maxBatch + 1)
        targetSamples = [Int](repeating: 0, count: Self.maxBatch + 1)
    }

    enum CodingKeys: String, CodingKey {
        case version, targetMilliseconds = "target_ms", targetSamples = "target_samples", samplingMilliseconds = "sampling_ms"
        case targetJoulesPerMillisecond = "target_j_per_ms", targetEnergySource = "target_energy_source"
        case network, bytesUp = "bytes_up", bytesDown = "bytes_down"
        case draftStepMilliseconds = "draft_step_ms", draftStepJoules = "draft_step_j", draftEnergySource = "draft_energy_source"
        case calibrationAccepted = "calibration_accepted", calibrationOffered = "calibration_offered"
        case depthAcceptance = "depth_acceptance", speedCorrection = "speed_correction", aheadHitRate = "ahead_hit_rate", rounds
        case depthObservations = "depth_observations", aheadObservations = "ahead_observations"
        case catchUpMillisecondsPerToken = "catch_up_ms_per_token", catchUpJoulesPerToken = "catch_up_j_per_token"
        case runAheadMillisecondsPerToken = "run_ahead_ms_per_token"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        targetMilliseconds = try c.decode([Double].self, forKey: .targetMilliseconds)
        targetSamples = try c.decode([Int].self, forKey: .targetSamples)
        samplingMilliseconds = try c.decode(Double.self, forKey: .samplingMilliseconds)
        targetJoulesPerMillisecond = try c.decode(Double.self, forKey: .targetJoulesPerMillisecond)
        targetEnergySource = try c.decodeIfPresent(EnergySource.self, forKey: .targetEnergySource)
        network = try c.decode(LinearFit.self, forKey: .network)
        bytesUp = try c.decode(LinearFit.self, forKey: .bytesUp)
        bytesDown = try c.decode(LinearFit.self, forKey: .bytesDown)
        draftStepMilliseconds = try c.decode([Double].self, forKey: .draftStepMilliseconds)
        draftStepJoules = try c.decode([Double].self, forKey: .draftStepJoules)
        draftEnergySource = try c.decodeIfPresent(EnergySource.self, forKey: .draftEnergySource)
        calibrationAccepted = try c.decode([Double].self, forKey: .calibrationAccepted)
        calibrationOffered = try c.decode([Double].self, forKey: .calibrationOffered)
        depthAcceptance = try c.decode([Double].self, forKey: .depthAcceptance)
        speedCorrection = try c.decode(Double.self, forKey: .speedCorrection)
        aheadHitRate = try c.decodeIfPresent(Double.self, forKey: .aheadHitRate) ?? 0
        depthObservations = try c.decodeIfPresent([Int].self, forKey: .depthObservations) ?? []
        aheadObservations = try c.decodeIfPresent(Int.self, forKey: .aheadObservations) ?? 0
        catchUpMillisecondsPerToken = try c.decodeIfPresent(Double.self, forKey: .catchUpMillisecondsPerToken) ?? 0
        catchUpJoulesPerToken = try c.decodeIfPresent(Double.self, forKey: .catchUpJoulesPerToken) ?? 0
        runAheadMillisecondsPerToken = try c.decodeIfPresent(Double.self, forKey: .runAheadMillisecondsPerToken) ?? 0
        rounds = try c.decode(Int.self, forKey: .rounds)
    }

    /// Checks a decoded profile's shape (a stored profile is input like any other).
    public func validated() throws(ControlError) -> CostProfile {
        guard version == Self.currentVersion else { throw .invalidSetting("profile version \(version), expected \(Self.currentVersion)") }
        guard targetMilliseconds.count == Self.maxBatch + 1, targetSamples.count == Self.maxBatch + 1,
              calibrationAccepted.count == 10, calibrationOffered.count == 10,
              draftStepMilliseconds.count == draftStepJoules.count else {
            throw .invalidSetting("profile arrays have the wrong length")
        }
        let all = targetMilliseconds + draftStepMilliseconds + draftStepJoules + calibrationAccepted + calibrationOffered + depthAcceptance
            + [samplingMilliseconds, targetJoulesPerMillisecond, speedCorrection, aheadHitRate, catchUpMillisecondsPerToken, catchUpJoulesPerToken,
               runAheadMillisecondsPerToken]
        guard all.allSatisfy({ $0.isFinite && $0 >= 0 }), network.isValid, bytesUp.isValid, bytesDown.isValid,
              aheadObservations >= 0, depthObservations.allSatisfy({ $0 >= 0 }) else {
            throw .invalidSetting("profile holds a negative or non-finite value")
        }
        return self
    }

    /// Fills in target times measured elsewhere (a server's start-up profile), for batch sizes
    /// this profile has not measured itself.
    public mutating func seedTargetTimings(_ timings: [(batch: Int, milliseconds: Double)]) {
        for (b, ms) in timings where b >= 1 && b < targetMilliseconds.count && ms.isFinite && ms > 0 && targetMilliseconds[b] == 0 {
            targetMilliseconds[b] = ms
            // The server measured it deliberately (median of several passes): trust it like a
            // size measured in a few rounds.
            targetSamples[b] = Self.trustedSamples
        }
    }

    /// This profile's costs with its acceptance evidence kept only as a prior worth about
    /// `observations` offered nodes per confidence decile and a few rounds per depth: the start
    /// of a profile for a narrower kind of prompt (the router's buckets), whose acceptance may
    /// differ from the drafter's average while its costs do not.
    public func withLightAcceptance(observations: Double = 8) -> CostProfile {
        var p = self
        for i in 0..<p.calibrationOffered.count where p.calibrationOffered[i] > observations {
            let scale = observations / p.calibrationOffered[i]
            p.calibrationOffered[i] *= scale
            p.calibrationAccepted[i] *= scale
        }
        p.depthObservations = p.depthObservations.map { min($0, 2) }
        return p
    }

    // MARK: Estimates

    /// Rounds after which a batch size's own smoothed time is trusted over the fitted line.
    static let trustedSamples = 3

    /// Estimated target compute for `b` tokens: the size's own smoothed time once it has been
    /// measured a few times; otherwise a line through the measured sizes, each weighted by how
    /// often it was measured (a size seen once — a cold first pass, a stray slow round — cannot
    /// bend the estimate for every other size); with one size known, a prior slope of 15 % of a
    /// token per extra token.
    public func targetMilliseconds(batch b: Int) -> Double {
        if b < targetMilliseconds.count, targetMilliseconds[b] > 0, targetSamples[b] >= Self.trustedSamples { return targetMilliseconds[b] }
        let known = targetMilliseconds.indices.filter { targetMilliseconds[$0] > 0 }
        guard let first = known.first else { return Double(b) }  // Nothing measured: only ratios matter.
        if known.count == 1 {
            let t1 = targetMilliseconds[first] / (1 + 0.15 * Double(first - 1))
            return t1 * (1 + 0.15 * Double(b - 1))
        }
        // Weighted least squares of ms against batch size over the measured sizes.
        var sw = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0
        for k in known {
            let w = Double(min(max(targetSamples[k], 1), 10))
            let x = Double(k), y = targetMilliseconds[k]
            sw += w; sx += w * x; sy += w * y; sxx += w * x * x; sxy += w * x * y
        }
        let mx = sx / sw, my = sy / sw
        let varX = sxx / sw - mx * mx
        // A batch never costs less than a smaller one, and extra tokens cost at least 5 % of one.
        let floorSlope = 0.05 * my / max(mx, 1)
        let slope = varX > 1e-9 ? max((sxy / sw - mx * my) / varX, floorSlope) : 0.15 * my / max(mx, 1)
        return max(my + slope * (Double(b) - mx), 0.01)
    }
    /// Whether the target has been timed at all.
    public var knowsTarget: Bool { targetMilliseconds.contains { $0 > 0 } }

    /// Draft time per depth step at `width` (nearest measured width; 0 if none).
    public func draftStep(width: Int) -> (milliseconds: Double, joules: Double) {
        guard !draftStepMilliseconds.isEmpty else { return (0, 0) }
        let measured = draftStepMilliseconds.indices.filter { draftStepMilliseconds[$0] > 0 }
        guard let i = measured.min(by: { abs($0 + 1 - width) < abs($1 + 1 - width) }) else { return (0, 0) }
        // Scale a step measured at another width by the node count it feeds (a model drafter's
        // step scores `width` frontier nodes in one batch; batches are sub-linear, so this is an
        // upper estimate).
        let scale = i + 1 == width ? 1 : Double(width) / Double(i + 1)
        return (draftStepMilliseconds[i] * scale, draftStepJoules[i] * scale)
    }

    /// What reading `tokens` unseen committed tokens costs a model drafter before it drafts (a
    /// quarter of a draft step per token until measured: they are read in one batch).
    public func catchUp(tokens: Int, width: Int) -> (milliseconds: Double, joules: Double) {
        guard tokens > 0 else { return (0, 0) }
        let step = draftStep(width: width)
        let ms = catchUpMillisecondsPerToken > 0 ? catchUpMillisecondsPerToken : step.milliseconds / 4
        let j = catchUpJoulesPerToken > 0 ? catchUpJoulesPerToken : step.joules / 4
        return (Double(tokens) * ms, Double(tokens) * j)
    }

    /// Calibrated probability that a node of drafter confidence `c` is accepted when offered.
    public func calibrated(_ c: Float) -> Double {
        let x = Double(min(max(c, 0), 1))
        let bin = min(Int(x * 10), 9)
        let prior = 2.0
        return (calibrationAccepted[bin] + prior * x) / (calibrationOffered[bin] + prior)
    }

    /// `calibrated` at the middle of each decile of confidence (what a drafter deepening its
    /// draft multiplies along a path: `DraftDeepening`).
    public var calibrationTable: [Double] { (0..<10).map { calibrated(Float((Double($0) + 0.5) / 10)) } }

    /// `depthAcceptance(d)` with two more accepted outcomes counted among the n outcomes seen
    /// at depth 1: 1 for a drafter never tried here, near the estimate once it has drafted for a
    /// while. What a probe is priced by (optimism where little is known), never what a plan is
    /// chosen by. Counted at depth 1, not at d: a drafter whose plans stop at depth 2 has seen
    /// nothing deeper, and optimism about each unseen depth sent probes of depth 4 and more
    /// every time a plain round was chosen (MT-bench at cs = 1, 20 ms: 77 rounds of 5 tokens
    /// where the policy before had 29, and 6 % dearer).
    public func optimisticDepthAcceptance(_ d: Int) -> Double {
        let a = depthAcceptance(d)
        let n = depthObservations.first ?? 0
        return a + 2 * (1 - a) / Double(n + 2)
    }

    /// Probability that depth d (1-based) is accepted given depth d − 1 was (0.6 before data).
    public func depthAcceptance(_ d: Int) -> Double {
        guard d >= 1, d <= depthAcceptance.count else { return depthAcceptance.last ?? 0.6 }
        return depthAcceptance[d - 1]
    }
}

/// An exponentially weighted least-squares line y ≈ a + b·x (b ≥ 0), for quantities that grow
/// with a round's size: network time and bytes against nodes.
public struct LinearFit: Codable, Sendable, Equatable {
    var n = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0
    /// Weight kept per new sample (recent rounds count more, old ones fade).
    static let decay = 0.98

    public init() {}

    public mutating func add(x: Double, y: Double) {
        guard x.isFinite, y.isFinite else { return }
        let d = Self.decay
        n = n * d + 1
        sx = sx * d + x
        sy = sy * d + y
        sxx = sxx * d + x * x
        sxy = sxy * d + x * y
    }

    /// Whether anything was measured.
    public var isEmpty: Bool { n == 0 }

    var isValid: Bool { [n, sx, sy, sxx, sxy].allSatisfy(\.isFinite) && n >= 0 }

    /// Slope and intercept (the mean when x has not varied).
    public var line: (intercept: Double, slope: Double) {
        guard n > 0 else { return (0, 0) }
        let mx = sx / n, my = sy / n
        let varX = sxx / n - mx * mx
        guard varX > 1e-6 * max(1, mx * mx) else { return (max(my, 0), 0) }
        let slope = max(0, (sxy / n - mx * my) / varX)
        return (max(0, my - slope * mx), slope)
    }

    public func predict(_ x: Double) -> Double {
        let (a, b) = line
        return a + b * x
    }

    enum CodingKeys: String, CodingKey { case n, sx, sy, sxx, sxy }
}
