/// Everything that can be wrong with a GGUF file, each case naming the file and the place.
public enum GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    case cannotOpen(path: String, reason: String)
    case badMagic(path: String, found: UInt32)
    case unsupportedVersion(path: String, version: UInt32)
    /// The header ended before a value could be read.
    case truncatedHeader(path: String, offset: Int, reading: String)
    /// A count or length is beyond any plausible GGUF (see `GGUFLimits`). A plausible count that
    /// the file is too short for is `truncatedHeader` instead.
    case absurdCount(path: String, offset: Int, what: String, value: UInt64)
    case invalidValueType(path: String, offset: Int, key: String, rawType: UInt32)
    case invalidString(path: String, offset: Int)
    case duplicateKey(path: String, key: String)
    case duplicateTensor(path: String, name: String)
    case unknownTensorType(path: String, tensor: String, rawType: UInt32)
    case badTensorShape(path: String, tensor: String, dims: [UInt64], reason: String)
    case badAlignment(path: String, alignment: UInt64)
    case nestingTooDeep(path: String, offset: Int, key: String)
    case tensorOutsideFile(path: String, tensor: String, offset: UInt64, size: Int, fileSize: Int)
    case misalignedTensor(path: String, tensor: String, offset: UInt64, alignment: Int)
    /// Tensor data is expected past the header but the file ends first.
    case truncatedData(path: String, expectedSize: Int, fileSize: Int)
    case missingKey(path: String, key: String)
    case wrongValueType(path: String, key: String, expected: String, found: String)
    case missingTensor(path: String, name: String)
    case unsupportedTensorType(path: String, tensor: String, type: GGMLType)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            "\(path): cannot open: \(reason)"
        case let .badMagic(path, found):
            "\(path): not a GGUF file (magic 0x\(String(found, radix: 16)), expected 0x46554747 'GGUF')"
        case let .unsupportedVersion(path, version):
            "\(path): unsupported GGUF version \(version) (supported: 2, 3)"
        case let .truncatedHeader(path, offset, reading):
            "\(path): header truncated at byte \(offset) while reading \(reading)"
        case let .absurdCount(path, offset, what, value):
            "\(path): absurd \(what) \(value) at byte \(offset) (beyond any plausible GGUF file)"
        case let .invalidValueType(path, offset, key, rawType):
            "\(path): metadata key '\(key)' has unknown value type \(rawType) at byte \(offset)"
        case let .invalidString(path, offset):
            "\(path): string at byte \(offset) is not valid UTF-8"
        case let .duplicateKey(path, key):
            "\(path): metadata key '\(key)' appears twice"
        case let .duplicateTensor(path, name):
            "\(path): tensor '\(name)' appears twice"
        case let .unknownTensorType(path, tensor, rawType):
            "\(path): tensor '\(tensor)' has unknown type \(rawType)"
        case let .badTensorShape(path, tensor, dims, reason):
            "\(path): tensor '\(tensor)' has bad shape \(dims): \(reason)"
        case let .badAlignment(path, alignment):
            "\(path): general.alignment \(alignment) is not a power of two between 1 and 65536"
        case let .nestingTooDeep(path, offset, key):
            "\(path): metadata key '\(key)' nests arrays too deeply at byte \(offset)"
        case let .tensorOutsideFile(path, tensor, offset, size, fileSize):
            "\(path): tensor '\(tensor)' (\(size) bytes at data offset \(offset)) lies outside the file (\(fileSize) bytes)"
        case let .misalignedTensor(path, tensor, offset, alignment):
            "\(path): tensor '\(tensor)' data offset \(offset) is not a multiple of the alignment \(alignment)"
        case let .truncatedData(path, expectedSize, fileSize):
            "\(path): tensor data truncated: the tensors need \(expectedSize) bytes but the file has \(fileSize)"
        case let .missingKey(path, key):
            "\(path): required metadata key '\(key)' is missing"
        case let .wrongValueType(path, key, expected, found):
            "\(path): metadata key '\(key)' should be \(expected) but is \(found)"
        case let .missingTensor(path, name):
            "\(path): required tensor '\(name)' is missing"
        case let .unsupportedTensorType(path, tensor, type):
            "\(path): tensor '\(tensor)' has type \(type), which Arbor cannot compute with"
        }
    }
}
