#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where an energy figure comes from.
public enum EnergySource: String, Codable, Sendable {
    /// Read from the CPU's energy counters (RAPL, `/sys/class/powercap`).
    case measured
    /// CPU time of the work × a per-core active power (`EnergyMeter.wattsPerCore`).
    case modelled
}

/// Measures the energy of a piece of work on this machine.
///
/// Where RAPL's package counter is readable (`/sys/class/powercap/intel-rapl:0/energy_uj`, also
/// exposed for AMD packages by Linux's `intel_rapl` driver) the energy is its difference across
/// the work: a measurement of the whole package, so it includes whatever else the machine did
/// meanwhile. Elsewhere it is *modelled*: the process's CPU time over the work (the sum of every
/// thread's CPU clock, so spinning or idle workers count only for the time they ran) times a
/// per-core active power. Every figure carries its `EnergySource`.
public struct EnergyMeter: Sendable {
    /// Active power of one busy core, W, for the model. 6 W is a middle value for a current
    /// desktop or laptop core under a dense integer/SIMD load (a Zen 5 desktop part draws about
    /// 80–120 W over 16 busy cores; a laptop core 3–8 W); set it for your device.
    public var wattsPerCore: Double
    /// The RAPL counter file, when readable.
    public let raplPath: String?

    public static let defaultWattsPerCore = 6.0

    public init(wattsPerCore: Double = EnergyMeter.defaultWattsPerCore, useRAPL: Bool = true) {
        self.wattsPerCore = wattsPerCore
        raplPath = useRAPL ? Self.findRAPL() : nil
    }

    public var source: EnergySource { raplPath == nil ? .modelled : .measured }

    /// A reading at one instant.
    public struct Reading: Sendable {
        /// Process CPU time, ns (all threads).
        public var cpuNanoseconds: UInt64
        /// RAPL package energy, µJ, when measured.
        public var microjoules: UInt64?
    }

    public func read() -> Reading {
        Reading(cpuNanoseconds: Self.processCPUNanoseconds(), microjoules: raplPath.flatMap(Self.readCounter))
    }

    /// CPU milliseconds and joules spent since `start`.
    public func since(_ start: Reading) -> (cpuMilliseconds: Double, joules: Double) {
        let now = read()
        let cpu = Double(now.cpuNanoseconds &- start.cpuNanoseconds) / 1e6
        if let a = start.microjoules, let b = now.microjoules, b >= a {
            return (cpu, Double(b - a) / 1e6)
        }
        return (cpu, joules(cpuMilliseconds: cpu))
    }

    /// The modelled energy of `cpuMilliseconds` of CPU time.
    public func joules(cpuMilliseconds: Double) -> Double { cpuMilliseconds / 1000 * wattsPerCore }

    /// CPU time of the whole process (every thread), ns.
    public static func processCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func findRAPL() -> String? {
        for path in ["/sys/class/powercap/intel-rapl:0/energy_uj", "/sys/class/powercap/intel-rapl/intel-rapl:0/energy_uj"] {
            if readCounter(path) != nil { return path }
        }
        return nil
    }

    static func readCounter(_ path: String) -> UInt64? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buffer = [CChar](repeating: 0, count: 32)
        guard fgets(&buffer, 32, f) != nil else { return nil }
        let digits = buffer.prefix { $0 >= 0x30 && $0 <= 0x39 }.map { UInt8(bitPattern: $0) }
        return digits.isEmpty ? nil : UInt64(String(decoding: digits, as: UTF8.self))
    }
}
