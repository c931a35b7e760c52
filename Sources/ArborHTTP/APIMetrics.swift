import ArborEngine
import Foundation
import Prometheus

/// The server's Prometheus metrics: requests by endpoint and status, tokens and seconds of
/// prompt reading and generation, the request queue, and vLLM's speculative-decoding counters.
/// Every counter is the sum of what the responses reported (`usage`, `timings`, `arbor`), so a
/// client can check one against the other.
final class APIMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let promptTokens: Counter
    private let generatedTokens: Counter
    private let promptSeconds: Counter
    private let generationSeconds: Counter
    private let drafts: Counter
    private let draftTokens: Counter
    private let acceptedTokens: Counter
    private let running: Gauge
    private let waiting: Gauge
    private let requestSeconds: ValueHistogram
    private let mergedPasses: Counter
    private let mergedRounds: Counter
    /// What the host's counters said at the last scrape (they only grow, per runtime).
    private let lastMerged = LockedPair()

    init() {
        promptTokens = registry.makeCounter(name: "arbor_prompt_tokens_total", help: "Prompt tokens read.")
        generatedTokens = registry.makeCounter(name: "arbor_generated_tokens_total", help: "Tokens generated (completion tokens).")
        promptSeconds = registry.makeCounter(name: "arbor_prompt_seconds_total", help: "Seconds spent reading prompts.")
        generationSeconds = registry.makeCounter(name: "arbor_generation_seconds_total", help: "Seconds spent generating.")
        drafts = registry.makeCounter(name: "arbor_spec_decode_num_drafts_total", help: "Rounds that sent a draft to the target (vLLM's spec_decode_num_drafts).")
        draftTokens = registry.makeCounter(name: "arbor_spec_decode_num_draft_tokens_total", help: "Drafted tokens sent to the target (vLLM's spec_decode_num_draft_tokens).")
        acceptedTokens = registry.makeCounter(name: "arbor_spec_decode_num_accepted_tokens_total", help: "Drafted tokens the target accepted (vLLM's spec_decode_num_accepted_tokens).")
        running = registry.makeGauge(name: "arbor_requests_running", help: "Generations running now.")
        waiting = registry.makeGauge(name: "arbor_requests_waiting", help: "Generations waiting for the target.")
        requestSeconds = registry.makeValueHistogram(
            name: "arbor_request_duration_seconds", buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
            help: "Wall time of completed generations, queueing included.")
        mergedPasses = registry.makeCounter(name: "arbor_target_merged_passes_total", help: "Target passes that scored several requests' rounds at once.")
        mergedRounds = registry.makeCounter(name: "arbor_target_merged_rounds_total", help: "Rounds scored in merged passes.")
        // Present from the start, so a scrape before the first request shows them at 0.
        for endpoint in ["chat", "completion"] { _ = requestCounter(endpoint: endpoint, status: 200) }
    }

    private func requestCounter(endpoint: String, status: Int) -> Counter {
        registry.makeCounter(name: "arbor_requests_total", labels: [("endpoint", endpoint), ("status", String(status))],
                             help: "Requests answered, by endpoint and HTTP status.")
    }

    /// A request answered with `status`.
    func answered(endpoint: String, status: Int) {
        requestCounter(endpoint: endpoint, status: status).increment()
    }

    /// A generation that finished (whole, or streamed to its end).
    func finished(_ r: GenerationResult, seconds: Double) {
        promptTokens.increment(by: Int64(r.promptTokens.count))
        generatedTokens.increment(by: Int64(r.tokens.count))
        promptSeconds.increment(by: r.stats.prefillMilliseconds / 1000)
        generationSeconds.increment(by: r.stats.decodeMilliseconds / 1000)
        requestSeconds.record(seconds)
        guard let sp = r.stats.speculative else { return }
        drafts.increment(by: Int64(sp.rounds - sp.plainRounds))
        draftTokens.increment(by: Int64(sp.draftedNodes))
        acceptedTokens.increment(by: Int64(sp.acceptedNodes))
        for (position, n) in sp.acceptedByDepth.enumerated() where n > 0 {
            registry.makeCounter(name: "arbor_spec_decode_num_accepted_tokens_per_pos_total", labels: [("position", String(position))],
                                 help: "Accepted drafted tokens by position in the draft, 0 first (vLLM's spec_decode_num_accepted_tokens_per_pos).")
                .increment(by: Int64(n))
        }
    }

    /// The text format, with the queue read now.
    func exposition(queue: (waiting: Int, running: Int)?, merged: (passes: Int, rounds: Int)?) -> String {
        running.set(Double(queue?.running ?? 0))
        waiting.set(Double(queue?.waiting ?? 0))
        if let merged {
            let (dp, dr) = lastMerged.advance(to: merged)
            mergedPasses.increment(by: Int64(dp))
            mergedRounds.increment(by: Int64(dr))
        }
        return registry.emitToString()
    }
}

/// The host counters' last seen values; a new runtime (new host, counters from 0) starts over.
final class LockedPair: @unchecked Sendable {
    private let lock = NSLock()
    private var last = (passes: 0, rounds: 0)

    /// The growth since the last call.
    func advance(to now: (passes: Int, rounds: Int)) -> (Int, Int) {
        lock.lock()
        defer { lock.unlock() }
        let d = now.passes >= last.passes && now.rounds >= last.rounds ? (now.passes - last.passes, now.rounds - last.rounds) : now
        last = now
        return d
    }
}
