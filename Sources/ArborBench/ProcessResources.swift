import ArborEngine
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Median, extremes and relative spread of repeated measurements.
public struct BenchmarkSummary: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double
    /// `(max - min) / median`: 0.05 means the runs lie within 5% of the median.
    public var spread: Double
    public var count: Int

    public init(_ samples: [Double]) {
        let s = samples.sorted()
        count = s.count
        guard !s.isEmpty else {
            median = 0; min = 0; max = 0; spread = 0
            return
        }
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        min = s.first!
        max = s.last!
        spread = median != 0 ? (max - min) / median : 0
    }
}

/// Facts about the running process and the machine, for benchmark reports: the one place
/// benchmarks read memory, CPU time, load and steal.
public enum ProcessResources {
    /// Peak resident set size of this process so far, in bytes (`getrusage` `ru_maxrss`).
    /// Includes the file-backed pages of memory-mapped model weights that were touched.
    public static var peakRSSBytes: Int {
        var usage = rusage()
        #if canImport(Glibc)
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        #if canImport(Darwin)
        return Int(usage.ru_maxrss)  // bytes on Darwin
        #else
        return Int(usage.ru_maxrss) * 1024  // KiB on Linux
        #endif
    }

    public static var peakRSSMiB: Double { Double(peakRSSBytes) / 1_048_576 }

    /// CPU time (user + system) of all this process's threads so far, in milliseconds — the
    /// same process CPU clock the energy meter reads. Compared with wall time it shows how much
    /// of the cores a run got on a shared machine (pool workers spin briefly while waiting, so
    /// it is an upper bound on useful work).
    public static var cpuMilliseconds: Double { Double(EnergyMeter.processCPUNanoseconds()) / 1e6 }

    /// Milliseconds since this process started, or nil where unknown.
    ///
    /// Linux: `now(CLOCK_BOOTTIME) - starttime` from `/proc/self/stat`; the start time is kept
    /// by the kernel in clock ticks (`sysconf(_SC_CLK_TCK)`, normally 100/s), so the value has
    /// a resolution of 10 ms.
    public static var millisecondsSinceStart: Double? {
        #if os(Linux)
        guard let stat = readFile("/proc/self/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after "comm)": state is field 3, starttime is field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        guard hz > 0 else { return nil }
        var ts = timespec()
        clock_gettime(CLOCK_BOOTTIME, &ts)
        let nowMs = Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
        return nowMs - ticks / hz * 1000
        #else
        return nil
        #endif
    }

    /// The 1, 5 and 15 minute load averages (how busy a shared machine was).
    public static var loadAverage: [Double] {
        var loads = [Double](repeating: 0, count: 3)
        let n = getloadavg(&loads, 3)
        return n > 0 ? Array(loads.prefix(Int(n))) : []
    }

    /// CPU time the hypervisor gave to other guests while this machine's CPUs wanted to run
    /// ("steal", summed over all CPUs, `/proc/stat`), in milliseconds since boot; nil where
    /// unknown. A difference over a run shows a virtual machine's host was busy.
    public static var stealMilliseconds: Double? {
        #if os(Linux)
        guard let stat = readFile("/proc/stat"),
              let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let fields = line.split(separator: " ")
        guard fields.count > 8, let ticks = Double(fields[8]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return hz > 0 ? ticks / hz * 1000 : nil
        #else
        return nil
        #endif
    }

    /// Online CPU cores.
    public static var onlineCores: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    static func readFile(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
