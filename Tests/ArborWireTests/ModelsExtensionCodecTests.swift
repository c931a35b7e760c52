import ArborWire
import NIOCore
import Testing

/// The models extension's frames (0x14 listModels, 0x15 modelList, 0x16 selectModel): exact bytes
/// as documented in docs/PROTOCOL.md §3.21–3.24, and exact parsing.
@Suite struct ModelsExtensionCodecTests: FrameChecks {
    @Test func listAndSelectBytes() throws {
        #expect(bytes(.listModels) == [0, 0, 0, 2, 1, 0x14])
        #expect(try decode([0, 0, 0, 2, 1, 0x14]) == .message(.listModels, bytes: 6))
        expectMalformed(0x14, [0], "a list request has no payload")
        #expect(bytes(.selectModel(SelectModel(name: "ab"))) == [0, 0, 0, 6, 1, 0x16, 0, 2, 0x61, 0x62])
        #expect(try decode([0, 0, 0, 6, 1, 0x16, 0, 2, 0x61, 0x62]) == .message(.selectModel(SelectModel(name: "ab")), bytes: 10))
        expectMalformed(0x16, [0, 3, 0x61], "name shorter than its length")
        expectMalformed(0x16, [0, 1, 0xFF], "name not UTF-8")
    }

    @Test func modelListBytes() throws {
        let list = ModelList(selected: 1, models: [
            ServedModel(name: "a", vocabularyHash: 0x0102_0304_0506_0708, vocabularySize: 100, contextLength: 4096, loaded: true, fileBytes: 5),
            ServedModel(name: "b", vocabularyHash: 9, vocabularySize: 200, contextLength: 8192, loaded: false, fileBytes: 1 << 32),
        ])
        let expected: [UInt8] = [
            0, 0, 0, 0x3E, 1, 0x15,            // length 62 = 2 + 2 + 2 + 2 · 28 (a one-byte name each)
            0, 1,                               // selected: the second
            0, 2,                               // two models
            0, 1, 0x61,                         // "a"
            1, 2, 3, 4, 5, 6, 7, 8,             // vocabulary hash
            0, 0, 0, 100,                       // vocabulary size
            0, 0, 0x10, 0,                      // context 4096
            1,                                  // loaded
            0, 0, 0, 0, 0, 0, 0, 5,             // file bytes
            0, 1, 0x62,                         // "b"
            0, 0, 0, 0, 0, 0, 0, 9,
            0, 0, 0, 200,
            0, 0, 0x20, 0,
            0,
            0, 0, 0, 1, 0, 0, 0, 0,
        ]
        #expect(bytes(.modelList(list)) == expected)
        #expect(try decode(expected) == .message(.modelList(list), bytes: expected.count))
        var payload = Array(expected.dropFirst(6))
        payload[1] = 2  // Selected index beyond the list.
        expectMalformed(0x15, payload, "selected index out of range")
        payload = Array(expected.dropFirst(6))
        payload[4 + 3 + 8 + 4 + 4] = 2  // "loaded" must be 0 or 1.
        expectMalformed(0x15, payload, "loaded flag 2")
        expectMalformed(0x15, Array(expected.dropFirst(6)) + [0], "trailing byte")
        #expect(bytes(.modelList(ModelList(selected: 0, models: []))) == [0, 0, 0, 6, 1, 0x15, 0, 0, 0, 0])
    }

    @Test func unknownModelIsANonFatalErrorCode() {
        #expect(WireErrorCode.unknownModel.rawValue == 17)
        #expect(!WireErrorCode.unknownModel.isFatal)
    }
}
