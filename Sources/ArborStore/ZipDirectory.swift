/// The central directory of a zip file (a wheel): member names, sizes and where their data starts.
/// Reading it needs no tool; inflating deflated members is left to `ZipExtractor`.
struct ZipDirectory {
    struct Entry: Equatable {
        var name: String
        /// 0 = stored, 8 = deflated.
        var method: UInt16
        var crc32: UInt32
        var compressedSize: Int64
        var uncompressedSize: Int64
        /// Offset of the entry's local file header.
        var localHeaderOffset: Int64
    }

    let path: String
    let entries: [Entry]

    init(path: String) throws(ModelStoreError) {
        self.path = path
        let file = try POSIXFile.reading(path)
        let fileSize = try file.size
        func bad(_ reason: String) -> ModelStoreError { .badWheel(path: path, reason: reason) }

        // End of central directory: 22 bytes plus a comment of at most 65535 bytes, at the end.
        let tailCount = Int(min(fileSize, 22 + 65_535))
        guard tailCount >= 22 else { throw bad("too short for a zip file (\(fileSize) bytes)") }
        let tailStart = fileSize - Int64(tailCount)
        let tail = try file.read(at: tailStart, count: tailCount)
        guard let eocd = stride(from: tailCount - 22, through: 0, by: -1).first(where: { le32(tail, $0) == 0x0605_4b50 }) else {
            throw bad("no end-of-central-directory record")
        }
        var entryCount = Int64(le16(tail, eocd + 10))
        var directorySize = Int64(le32(tail, eocd + 12))
        var directoryOffset = Int64(le32(tail, eocd + 16))

        // Zip64: the 32-bit fields are saturated and a locator sits just before the record.
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            guard eocd >= 20, le32(tail, eocd - 20) == 0x0706_4b50 else { throw bad("zip64 locator missing") }
            let recordOffset = Int64(le64(tail, eocd - 20 + 8))
            guard recordOffset >= 0, recordOffset + 56 <= fileSize else { throw bad("zip64 record outside the file") }
            let record = try file.read(at: recordOffset, count: 56)
            guard le32(record, 0) == 0x0606_4b50 else { throw bad("bad zip64 end-of-central-directory signature") }
            entryCount = Int64(le64(record, 32))
            directorySize = Int64(le64(record, 40))
            directoryOffset = Int64(le64(record, 48))
        }
        guard directoryOffset >= 0, directorySize >= 0, directoryOffset + directorySize <= fileSize,
              directorySize <= 64 << 20
        else { throw bad("central directory outside the file") }

        let directory = try file.read(at: directoryOffset, count: Int(directorySize))
        var entries: [Entry] = []
        var p = 0
        for _ in 0..<entryCount {
            guard p + 46 <= directory.count, le32(directory, p) == 0x0201_4b50 else {
                throw bad("corrupt central directory entry at byte \(directoryOffset + Int64(p))")
            }
            let nameLength = Int(le16(directory, p + 28))
            let extraLength = Int(le16(directory, p + 30))
            let commentLength = Int(le16(directory, p + 32))
            guard p + 46 + nameLength + extraLength + commentLength <= directory.count else {
                throw bad("central directory entry overruns the directory")
            }
            var entry = Entry(
                name: String(decoding: directory[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self),
                method: le16(directory, p + 10),
                crc32: le32(directory, p + 16),
                compressedSize: Int64(le32(directory, p + 20)),
                uncompressedSize: Int64(le32(directory, p + 24)),
                localHeaderOffset: Int64(le32(directory, p + 42))
            )
            // Zip64 extended information (id 1): the saturated fields, in this order, only if saturated.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = le16(directory, e), size = Int(le16(directory, e + 2))
                if id == 1 {
                    var q = e + 4
                    func next() -> Int64? {
                        guard q + 8 <= e + 4 + size else { return nil }
                        defer { q += 8 }
                        return Int64(le64(directory, q))
                    }
                    if entry.uncompressedSize == 0xFFFF_FFFF, let v = next() { entry.uncompressedSize = v }
                    if entry.compressedSize == 0xFFFF_FFFF, let v = next() { entry.compressedSize = v }
                    if entry.localHeaderOffset == 0xFFFF_FFFF, let v = next() { entry.localHeaderOffset = v }
                }
                e += 4 + size
            }
            entries.append(entry)
            p += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
    }

    /// Offset of a stored member's bytes: past its local header, whose name and extra lengths may
    /// differ from the central directory's.
    func dataOffset(of entry: Entry) throws(ModelStoreError) -> Int64 {
        let file = try POSIXFile.reading(path)
        let header = try file.read(at: entry.localHeaderOffset, count: 30)
        guard le32(header, 0) == 0x0403_4b50 else {
            throw .badWheel(path: path, reason: "bad local header for \(entry.name)")
        }
        return entry.localHeaderOffset + 30 + Int64(le16(header, 26)) + Int64(le16(header, 28))
    }
}

private func le16(_ b: [UInt8], _ i: Int) -> UInt16 {
    UInt16(b[i]) | UInt16(b[i + 1]) << 8
}

private func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(le16(b, i)) | UInt32(le16(b, i + 2)) << 16
}

private func le64(_ b: [UInt8], _ i: Int) -> UInt64 {
    UInt64(le32(b, i)) | UInt64(le32(b, i + 4)) << 32
}
