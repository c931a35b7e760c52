import Foundation

/// What a learned `CostProfile` belongs to: costs differ by machine, drafter, server and target
/// model, so each combination learns its own.
public struct ProfileKey: Hashable, Codable, Sendable, CustomStringConvertible {
    /// The machine drafting (see `thisDevice`).
    public var device: String
    /// The drafter, as the user names it (`ngram`, `suffix`, `model:qwen2.5-coder-0.5b`, …).
    public var drafter: String
    /// The verification server's name, or `ProfileKey.localServer` for an in-process target.
    public var server: String
    /// The target model.
    public var target: String

    /// The `server` of a target that runs in this process.
    public static let localServer = "local"

    /// A key from its four parts.
    public init(device: String, drafter: String, server: String, target: String) {
        self.device = device
        self.drafter = drafter
        self.server = server
        self.target = target
    }

    /// `device, drafter → target on server`, for messages.
    public var description: String { "\(device), \(drafter) → \(target) on \(server)" }

    /// A stable name for this machine: its host name and CPU model, e.g.
    /// `"myhost (AMD Ryzen 9 7950X 16-Core Processor)"`; the host name alone when the CPU model
    /// is unknown, `"unknown"` when neither is.
    public static let thisDevice: String = deviceName(host: hostName(), cpu: thisCPU)
    /// This machine's CPU model, if the system says.
    public static let thisCPU: String? = cpuModel()

    /// Joins a host name and CPU model as `thisDevice` does (either may be missing).
    public static func deviceName(host: String?, cpu: String?) -> String {
        let host = host.map(squeeze).flatMap { $0.isEmpty ? nil : $0 }
        let cpu = cpu.map(squeeze).flatMap { $0.isEmpty ? nil : $0 }
        switch (host, cpu) {
        case let (h?, c?): return "\(h) (\(c))"
        case let (h?, nil): return h
        case let (nil, c?): return "unknown (\(c))"
        case (nil, nil): return "unknown"
        }
    }

    /// The `model name` of the first processor in `/proc/cpuinfo`-formatted text.
    public static func cpuModel(cpuinfo: String) -> String? {
        for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: true) {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            // x86 says "model name"; some ARM kernels say "Model" or "Hardware" instead.
            if name == "model name" || name == "Model" || name == "Hardware" {
                let value = squeeze(String(parts[1]))
                if !value.isEmpty { return value }
            }
        }
        return nil
    }

    private static func cpuModel() -> String? {
        #if os(Linux)
        guard let data = FileManager.default.contents(atPath: "/proc/cpuinfo") else { return nil }
        return cpuModel(cpuinfo: String(decoding: data, as: UTF8.self))
        #elseif canImport(Darwin)
        var size = 0
        guard sysctlbyname("machdep.cpu.brand_string", nil, &size, nil, 0) == 0, size > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: size)
        guard sysctlbyname("machdep.cpu.brand_string", &buffer, &size, nil, 0) == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #else
        return nil
        #endif
    }

    private static func hostName() -> String? {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return nil }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    /// Trims and collapses runs of white space (CPU names are often padded).
    private static func squeeze(_ s: String) -> String {
        s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).joined(separator: " ")
    }
}
