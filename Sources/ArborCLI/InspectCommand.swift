import ArborGGUF
import ArgumentParser
import Foundation

/// `arbor inspect <model>`: what a GGUF file holds — metadata, then a tensor summary.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a GGUF file's metadata and tensors.",
        discussion: """
            Long arrays are summarized as [string × 151936] and long strings cut short; --full \
            shows everything. --json prints one JSON object instead (arrays as element type and \
            count unless --full, every tensor listed).
            """
    )

    @Argument(help: ArgumentHelp("Model alias or path to a GGUF file.", valueName: "alias|path"))
    var model: String

    @Flag(help: "Show whole strings and every array element.")
    var full = false

    @Flag(help: "List every tensor: name, type, shape, bytes and data offset.")
    var tensors = false

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() async throws {
        let path = try ModelOptions.resolve(model)
        let file = try GGUFFile(path: path)
        var out = OutputBuffer()
        if json {
            InspectJSON.render(file, full: full).write(to: &out.text)
            out.text += "\n"
        } else {
            renderText(file, into: &out)
        }
        out.flush()
    }

    // MARK: Text

    private func renderText(_ file: GGUFFile, into out: inout OutputBuffer) {
        out.line(file.path)
        out.line("GGUF v\(file.version), \(formatBytes(file.fileSize)), alignment \(file.alignment), data at byte \(file.dataOffset)")
        out.line("")
        out.line("Metadata (\(file.metadataKeys.count) keys):")
        let keyWidth = min(48, file.metadataKeys.map(\.count).max() ?? 0)
        let typeWidth = file.metadataKeys.compactMap { file.metadata[$0]?.typeSummary.count }.max() ?? 0
        for key in file.metadataKeys {
            guard let value = file.metadata[key] else { continue }
            let prefix = "  " + pad(key, keyWidth) + "  " + pad(value.typeSummary, typeWidth) + "  "
            if full, case let .array(a) = value, a.count > 8 {
                out.line(prefix + "[\(a.elementType) × \(a.count)]")
                for (i, element) in a.elementSummaries(maxElements: nil, maxCharacters: nil).enumerated() {
                    out.line("      [\(i)] " + element)
                }
            } else {
                out.line(prefix + (full ? value.summary(maxElements: nil, maxCharacters: nil) : value.summary()))
            }
        }
        out.line("")
        out.line("Tensors: \(file.tensors.count), \(formatBytes(file.tensorBytes))")
        let tally = file.tensorTypeTally
        let countWidth = max(5, tally.map { String($0.count).count }.max() ?? 0)
        out.line("  " + pad("type", 8) + lpad("count", countWidth) + "  " + lpad("bytes", 12))
        for t in tally {
            out.line("  " + pad(t.type.description, 8) + lpad(String(t.count), countWidth) + "  "
                     + lpad(String(t.bytes), 12) + "  " + formatBytes(t.bytes, exact: false))
        }
        guard tensors else { return }
        out.line("")
        let nameWidth = min(56, max(4, file.tensors.map(\.name.count).max() ?? 0))
        let shapes = file.tensors.map { "[" + $0.dims.map(String.init).joined(separator: ", ") + "]" }
        let shapeWidth = max(5, shapes.map(\.count).max() ?? 0)
        out.line("  " + pad("name", nameWidth) + "  " + pad("type", 8) + pad("shape", shapeWidth) + "  "
                 + lpad("bytes", 12) + "  " + lpad("offset", 12))
        for (info, shape) in zip(file.tensors, shapes) {
            out.line("  " + pad(info.name, nameWidth) + "  " + pad(info.type.description, 8) + pad(shape, shapeWidth) + "  "
                     + lpad(String(info.byteCount), 12) + "  " + lpad(String(info.offset), 12))
        }
    }
}

// MARK: JSON

/// The `--json` rendering: a hand-rolled writer so that key order is the file's and 64-bit
/// integers stay exact.
enum InspectJSON {
    indirect enum Value {
        case object([(String, Value)])
        case array([Value])
        case string(String)
        /// Already-formatted number text (integers exact, floats shortest round-trip).
        case number(String)
        case bool(Bool)
        case null

        func write(to out: inout String) {
            switch self {
            case let .object(members):
                out += "{"
                for (i, (k, v)) in members.enumerated() {
                    if i > 0 { out += "," }
                    Value.string(k).write(to: &out)
                    out += ":"
                    v.write(to: &out)
                }
                out += "}"
            case let .array(items):
                out += "["
                for (i, v) in items.enumerated() {
                    if i > 0 { out += "," }
                    v.write(to: &out)
                }
                out += "]"
            case let .string(s): Value.escape(s, into: &out)
            case let .number(n): out += n
            case let .bool(b): out += b ? "true" : "false"
            case .null: out += "null"
            }
        }

        static func escape(_ s: String, into out: inout String) {
            out += "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where u.value < 0x20 || u.value == 0x7F || u.value == 0x2028 || u.value == 0x2029:
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: out.unicodeScalars.append(u)
                }
            }
            out += "\""
        }
    }

    /// JSON has no NaN or infinities: those become the strings "nan", "inf", "-inf".
    static func float<F: BinaryFloatingPoint & CustomStringConvertible>(_ x: F) -> Value {
        if x.isNaN { return .string("nan") }
        if x.isInfinite { return .string(x < 0 ? "-inf" : "inf") }
        return .number(x.description)
    }

    static func value(_ v: GGUFValue, full: Bool) -> Value {
        switch v {
        case let .uint8(x): .number(String(x))
        case let .int8(x): .number(String(x))
        case let .uint16(x): .number(String(x))
        case let .int16(x): .number(String(x))
        case let .uint32(x): .number(String(x))
        case let .int32(x): .number(String(x))
        case let .uint64(x): .number(String(x))
        case let .int64(x): .number(String(x))
        case let .float32(x): float(x)
        case let .float64(x): float(x)
        case let .bool(b): .bool(b)
        case let .string(s): .string(s)
        case let .array(a): elements(a, full: full)
        }
    }

    static func elements(_ a: GGUFArray, full: Bool) -> Value {
        switch a {
        case let .uint8(xs): .array(xs.map { .number(String($0)) })
        case let .int8(xs): .array(xs.map { .number(String($0)) })
        case let .uint16(xs): .array(xs.map { .number(String($0)) })
        case let .int16(xs): .array(xs.map { .number(String($0)) })
        case let .uint32(xs): .array(xs.map { .number(String($0)) })
        case let .int32(xs): .array(xs.map { .number(String($0)) })
        case let .uint64(xs): .array(xs.map { .number(String($0)) })
        case let .int64(xs): .array(xs.map { .number(String($0)) })
        case let .float32(xs): .array(xs.map { float($0) })
        case let .float64(xs): .array(xs.map { float($0) })
        case let .bool(xs): .array(xs.map { .bool($0) })
        case let .string(xs): .array(xs.map { .string($0) })
        case let .array(xs): .array(xs.map { arrayEntry($0, full: full) })
        }
    }

    /// An array as `{"element_type", "count"}`, plus `"value"` when `full` or it is short (≤ 8).
    static func arrayEntry(_ a: GGUFArray, full: Bool) -> Value { .object(arrayMembers(a, full: full)) }

    static func arrayMembers(_ a: GGUFArray, full: Bool) -> [(String, Value)] {
        var members: [(String, Value)] = [
            ("element_type", .string(a.elementType.description)), ("count", .number(String(a.count))),
        ]
        if full || a.count <= 8 { members.append(("value", elements(a, full: full))) }
        return members
    }

    static func render(_ file: GGUFFile, full: Bool) -> Value {
        let metadata: [(String, Value)] = file.metadataKeys.compactMap { key in
            guard let v = file.metadata[key] else { return nil }
            if case let .array(a) = v {
                return (key, .object([("type", .string("array"))] + arrayMembers(a, full: full)))
            }
            return (key, .object([("type", .string(v.type.description)), ("value", value(v, full: full))]))
        }
        let tally: [Value] = file.tensorTypeTally.map {
            .object([("type", .string($0.type.description)), ("count", .number(String($0.count))),
                     ("bytes", .number(String($0.bytes)))])
        }
        let tensors: [Value] = file.tensors.map { t in
            .object([
                ("name", .string(t.name)), ("type", .string(t.type.description)),
                ("shape", .array(t.dims.map { .number(String($0)) })),
                ("bytes", .number(String(t.byteCount))), ("offset", .number(String(t.offset))),
            ])
        }
        return .object([
            ("path", .string(file.path)),
            ("version", .number(String(file.version))),
            ("file_size", .number(String(file.fileSize))),
            ("alignment", .number(String(file.alignment))),
            ("data_offset", .number(String(file.dataOffset))),
            ("architecture", .string(file.architecture)),
            ("metadata", .object(metadata)),
            ("tensor_count", .number(String(file.tensors.count))),
            ("tensor_bytes", .number(String(file.tensorBytes))),
            ("tensor_types", .array(tally)),
            ("tensors", .array(tensors)),
        ])
    }
}

// MARK: Helpers

/// Collects output and writes it to stdout in large chunks (vocabularies have 262k lines).
private struct OutputBuffer {
    var text = ""

    mutating func line(_ s: String) {
        text += s
        text += "\n"
        if text.utf8.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !text.isEmpty else { return }
        FileHandle.standardOutput.write(Data(text.utf8))
        text = ""
    }
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

private func lpad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// `98362432 bytes (93.8 MiB)`, or just `93.8 MiB` when not `exact`.
private func formatBytes(_ n: Int, exact: Bool = true) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(n), unit = 0
    while value >= 1024, unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    let human = unit == 0 ? "\(n) bytes" : String(format: "%.1f", value) + " " + units[unit]
    return exact && unit > 0 ? "\(n) bytes (\(human))" : human
}
