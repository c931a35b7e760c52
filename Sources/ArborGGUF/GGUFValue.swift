/// The value types a GGUF metadata entry can have (`enum gguf_type`).
public enum GGUFValueType: UInt32, Sendable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6
    case bool = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var description: String {
        switch self {
        case .uint8: "u8"
        case .int8: "i8"
        case .uint16: "u16"
        case .int16: "i16"
        case .uint32: "u32"
        case .int32: "i32"
        case .float32: "f32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .uint64: "u64"
        case .int64: "i64"
        case .float64: "f64"
        }
    }
}

/// A metadata array, stored typed so that a 262k-entry vocabulary stays compact.
public enum GGUFArray: Sendable, Equatable {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16])
    case uint32([UInt32]), int32([Int32]), float32([Float]), bool([Bool])
    case string([String]), uint64([UInt64]), int64([Int64]), float64([Double])
    /// Nested arrays, each with its own element type.
    case array([GGUFArray])

    public var count: Int {
        switch self {
        case let .uint8(a): a.count
        case let .int8(a): a.count
        case let .uint16(a): a.count
        case let .int16(a): a.count
        case let .uint32(a): a.count
        case let .int32(a): a.count
        case let .float32(a): a.count
        case let .bool(a): a.count
        case let .string(a): a.count
        case let .uint64(a): a.count
        case let .int64(a): a.count
        case let .float64(a): a.count
        case let .array(a): a.count
        }
    }

    public var elementType: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        case .array: .array
        }
    }

    /// Integer elements widened to `Int`, or nil for non-integer arrays.
    public var integers: [Int]? {
        switch self {
        case let .uint8(a): a.map(Int.init)
        case let .int8(a): a.map(Int.init)
        case let .uint16(a): a.map(Int.init)
        case let .int16(a): a.map(Int.init)
        case let .uint32(a): a.map(Int.init)
        case let .int32(a): a.map(Int.init)
        case let .uint64(a): a.map { Int(truncatingIfNeeded: $0) }
        case let .int64(a): a.map { Int($0) }
        case let .bool(a): a.map { $0 ? 1 : 0 }
        default: nil
        }
    }

    /// Floating-point elements as `Float`, or nil for non-numeric arrays.
    public var floats: [Float]? {
        switch self {
        case let .float32(a): a
        case let .float64(a): a.map { Float($0) }
        default: integers?.map { Float($0) }
        }
    }
}

/// One metadata value.
public enum GGUFValue: Sendable, Equatable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), float32(Float), bool(Bool)
    case string(String), array(GGUFArray), uint64(UInt64), int64(Int64), float64(Double)

    public var type: GGUFValueType {
        switch self {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .float32: .float32
        case .bool: .bool
        case .string: .string
        case .array: .array
        case .uint64: .uint64
        case .int64: .int64
        case .float64: .float64
        }
    }

    /// The value as an integer if it is one (any width, or a bool).
    public var int: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(v)
        case let .int32(v): Int(v)
        case let .uint64(v): v <= UInt64(Int.max) ? Int(v) : nil
        case let .int64(v): Int(v)
        case let .bool(v): v ? 1 : 0
        default: nil
        }
    }

    /// The value as a float if it is numeric.
    public var float: Double? {
        switch self {
        case let .float32(v): Double(v)
        case let .float64(v): v
        default: int.map(Double.init)
        }
    }

    public var string: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var bool: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var array: GGUFArray? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var description: String {
        switch self {
        case let .uint8(v): "\(v)"
        case let .int8(v): "\(v)"
        case let .uint16(v): "\(v)"
        case let .int16(v): "\(v)"
        case let .uint32(v): "\(v)"
        case let .int32(v): "\(v)"
        case let .float32(v): "\(v)"
        case let .bool(v): "\(v)"
        case let .string(s): s.count > 80 ? "\"\(s.prefix(77))...\"" : "\"\(s)\""
        case let .array(a): "[\(a.elementType) × \(a.count)]"
        case let .uint64(v): "\(v)"
        case let .int64(v): "\(v)"
        case let .float64(v): "\(v)"
        }
    }
}
