import ArborEngine
import Foundation
import GRDB
import Testing
@testable import ArborProfiles

/// A fresh directory under the system temporary directory, removed when the object goes away
/// (keep it alive with `withExtendedLifetime` or by using it last).
final class Scratch {
    let url: URL
    var path: String { url.path }

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("arbor-profiles-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Names in the directory that start with `prefix`.
    func names(startingWith prefix: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasPrefix(prefix) }.sorted()
    }
}

/// A profile with something measured in every part.
func sampleProfile(seed: Double = 1, rounds: Int = 42) -> CostProfile {
    var p = CostProfile()
    p.targetMilliseconds[1] = 20 * seed
    p.targetMilliseconds[5] = 31.25 * seed
    p.targetMilliseconds[17] = 0.1 + 44 * seed
    p.targetSamples[1] = 10
    p.targetSamples[5] = 3
    p.targetSamples[17] = 1
    p.samplingMilliseconds = 0.7
    p.network.add(x: 4, y: 12.5)
    p.network.add(x: 9, y: 14.1)
    p.bytesUp.add(x: 4, y: 180)
    p.bytesDown.add(x: 2, y: 64)
    p.draftStepMilliseconds = [2.5 * seed, 3.75]
    p.draftStepJoules = [0, 0]
    p.calibrationAccepted[7] = 3.3
    p.calibrationOffered[7] = 5
    p.depthAcceptance = [0.9, 0.7, 1.0 / 3.0]
    p.speedCorrection = 1.07
    p.rounds = rounds
    return p
}

let keyA = ProfileKey(device: "host (CPU)", drafter: "ngram", server: ProfileKey.localServer, target: "qwen2.5-coder-1.5b")

@Suite struct ProfileStoreTests {
    @Test func roundTrip() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        let store = try ProfileStore(path: path)
        #expect(try store.load(keyA) == nil)
        let profile = sampleProfile()
        try store.save(keyA, profile)
        #expect(try store.load(keyA) == profile)
        // Another connection (another process, in effect) reads the same.
        #expect(try ProfileStore(path: path).load(keyA) == profile)
        // An empty profile round-trips too.
        let keyE = ProfileKey(device: "d", drafter: "suffix", server: "local", target: "t")
        try store.save(keyE, CostProfile())
        #expect(try store.load(keyE) == CostProfile())
    }

    @Test func upsertReplacesAndKeepsID() throws {
        let dir = try Scratch()
        let store = try ProfileStore(path: dir.file("p.sqlite"))
        try store.save(keyA, sampleProfile(seed: 1, rounds: 5), at: Date(timeIntervalSince1970: 1_000))
        let first = try store.list()
        try store.save(keyA, sampleProfile(seed: 2, rounds: 9), at: Date(timeIntervalSince1970: 2_000))
        let second = try store.list()
        #expect(first.count == 1 && second.count == 1)
        #expect(first[0].id == second[0].id)
        #expect(second[0].rounds == 9)
        #expect(abs(second[0].updatedAt.timeIntervalSince1970 - 2_000) < 0.01)
        #expect(try store.load(keyA) == sampleProfile(seed: 2, rounds: 9))
    }

    @Test func keysAreDistinct() throws {
        let dir = try Scratch()
        let store = try ProfileStore(path: dir.file("p.sqlite"))
        let keys = [
            keyA,
            ProfileKey(device: "other", drafter: keyA.drafter, server: keyA.server, target: keyA.target),
            ProfileKey(device: keyA.device, drafter: "suffix", server: keyA.server, target: keyA.target),
            ProfileKey(device: keyA.device, drafter: keyA.drafter, server: "gpu-box", target: keyA.target),
            ProfileKey(device: keyA.device, drafter: keyA.drafter, server: keyA.server, target: "smollm2-135m"),
        ]
        for (i, key) in keys.enumerated() { try store.save(key, sampleProfile(seed: Double(i + 1), rounds: i)) }
        #expect(try store.list().count == keys.count)
        for (i, key) in keys.enumerated() { #expect(try store.load(key) == sampleProfile(seed: Double(i + 1), rounds: i)) }
        #expect(Set(try store.list().map(\.key)) == Set(keys))
    }

    @Test func listDeleteAndDeleteAll() throws {
        let dir = try Scratch()
        let store = try ProfileStore(path: dir.file("p.sqlite"))
        #expect(try store.list().isEmpty)
        let keyB = ProfileKey(device: "d", drafter: "model:qwen2.5-coder-0.5b", server: "srv", target: "t")
        try store.save(keyA, sampleProfile())
        try store.save(keyB, CostProfile())
        let list = try store.list()
        #expect(list.map(\.key) == [keyA, keyB])
        let a = list[0], b = list[1]
        #expect(a.rounds == 42)
        #expect(a.targetMillisecondsPerToken == 20)
        #expect(a.draftStepMilliseconds == 2.5)
        #expect(abs((a.meanDepthAcceptance ?? 0) - (0.9 + 0.7 + 1.0 / 3.0) / 3) < 1e-12)
        #expect((a.roundOverheadMilliseconds ?? -1) > 0)
        #expect(a.problem == nil)
        // An empty profile: nothing measured.
        #expect(b.targetMillisecondsPerToken == nil && b.draftStepMilliseconds == nil && b.meanDepthAcceptance == nil)
        #expect(b.roundOverheadMilliseconds == 0)

        #expect(try store.record(id: a.id)?.profile == sampleProfile())
        #expect(try store.record(id: a.id)?.key == keyA)
        #expect(try store.key(id: b.id) == keyB)
        #expect(try store.record(id: 9_999) == nil)

        #expect(try store.delete(id: a.id))
        #expect(try !store.delete(id: a.id))
        #expect(try store.load(keyA) == nil)
        #expect(try store.list().map(\.key) == [keyB])
        try store.save(keyA, sampleProfile())
        #expect(try store.deleteAll() == 2)
        #expect(try store.list().isEmpty)
        #expect(try store.deleteAll() == 0)
    }

    @Test func missingFileAndDirectoriesAreCreatedWithoutWarning() throws {
        let dir = try Scratch()
        let path = dir.file("a/b/profiles.sqlite")
        let (store, warning) = try ProfileStore.openOrRecover(path: path)
        #expect(warning == nil)
        try store.save(keyA, sampleProfile())
        #expect(FileManager.default.fileExists(atPath: path))
        // A healthy file opens without a warning and keeps its rows.
        let (again, warning2) = try ProfileStore.openOrRecover(path: path)
        #expect(warning2 == nil)
        #expect(try again.load(keyA) == sampleProfile())
    }

    @Test func randomBytesAreMovedAside() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        var generator = SystemRandomNumberGenerator()
        let junk = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        try Data(junk).write(to: URL(fileURLWithPath: path))

        #expect(throws: ProfileStoreError.self) { try ProfileStore(path: path) }
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let (store, warning) = try ProfileStore.openOrRecover(path: path, now: now)
        let moved = path + ".corrupt-1700000000"
        #expect(warning == "profile database \(path) is corrupt (file is not a database); moved it to \(moved) and started a fresh one")
        #expect(FileManager.default.contents(atPath: moved) == Data(junk))
        try store.save(keyA, sampleProfile())
        #expect(try store.load(keyA) == sampleProfile())

        // The same second again: a second name, nothing overwritten.
        try store.deleteAll()
        try Data(junk).write(to: URL(fileURLWithPath: path))
        let (_, warning2) = try ProfileStore.openOrRecover(path: path, now: now)
        #expect(warning2?.contains(moved + "-1") == true)
        #expect(try dir.names(startingWith: "profiles.sqlite.corrupt-").count == 2)
    }

    @Test func staleJournalDoesNotMeetTheFreshFile() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        try Data(repeating: 0xAB, count: 4096).write(to: URL(fileURLWithPath: path))
        try Data(repeating: 0xCD, count: 512).write(to: URL(fileURLWithPath: path + "-journal"))
        let (store, warning) = try ProfileStore.openOrRecover(path: path, now: Date(timeIntervalSince1970: 5))
        #expect(warning != nil)
        // SQLite may discard a journal it finds invalid; either way it must not meet the fresh file.
        let old = FileManager.default.contents(atPath: path + "-journal")
        #expect(old != Data(repeating: 0xCD, count: 512))
        try store.save(keyA, sampleProfile())
        #expect(try store.load(keyA) == sampleProfile())
    }

    @Test func truncatedDatabaseIsMovedAside() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        do {
            let store = try ProfileStore(path: path)
            for i in 0..<40 {
                try store.save(ProfileKey(device: "d\(i)", drafter: "ngram", server: "local", target: "t"), sampleProfile(seed: Double(i + 1)))
            }
        }
        let bytes = try #require(FileManager.default.contents(atPath: path))
        #expect(bytes.count > 64 * 1024)
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))

        let (store, warning) = try ProfileStore.openOrRecover(path: path)
        let w = try #require(warning)
        #expect(w.hasPrefix("profile database \(path) is corrupt ("))
        #expect(w.hasSuffix("and started a fresh one"))
        #expect(try store.list().isEmpty)
        try store.save(keyA, sampleProfile())
        #expect(try store.load(keyA) == sampleProfile())
        #expect(try dir.names(startingWith: "profiles.sqlite.corrupt-").count == 1)
    }

    @Test func foreignProfileTableIsMovedAside() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TABLE profile (name TEXT, age INTEGER)")
            try db.execute(sql: "INSERT INTO profile VALUES ('x', 3)")
        }
        #expect(throws: ProfileStoreError.self) { try ProfileStore(path: path) }
        let (store, warning) = try ProfileStore.openOrRecover(path: path)
        let w = try #require(warning)
        #expect(w.contains("has an incompatible schema (table profile lacks columns id, device"))
        #expect(w.contains("moved it to \(path).corrupt-"))
        try store.save(keyA, sampleProfile())
        #expect(try store.load(keyA) == sampleProfile())

        // Right columns but no unique key: the upsert could not work, so it is not ours either.
        let path2 = dir.file("other.sqlite")
        try DatabaseQueue(path: path2).write { db in
            try db.execute(sql: "CREATE TABLE profile (id INTEGER PRIMARY KEY, device TEXT, drafter TEXT, server TEXT, target TEXT, updated_at DATETIME, rounds INTEGER, data TEXT)")
        }
        let (_, warning2) = try ProfileStore.openOrRecover(path: path2)
        #expect(warning2?.contains("no unique key") == true)

        // A view named profile.
        let path3 = dir.file("view.sqlite")
        try DatabaseQueue(path: path3).write { db in try db.execute(sql: "CREATE VIEW profile AS SELECT 1 AS one") }
        let (_, warning3) = try ProfileStore.openOrRecover(path: path3)
        #expect(warning3?.contains("profile is a view") == true)
    }

    @Test func unrelatedDatabaseGainsOurTableAndKeepsItsOwn() throws {
        let dir = try Scratch()
        let path = dir.file("shared.sqlite")
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TABLE notes (body TEXT)")
            try db.execute(sql: "INSERT INTO notes VALUES ('keep me')")
        }
        let (store, warning) = try ProfileStore.openOrRecover(path: path)
        #expect(warning == nil)
        try store.save(keyA, sampleProfile())
        let notes = try DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT body FROM notes") }
        #expect(notes == ["keep me"])
    }

    @Test func badRowsAreTypedErrorsAndReplaceable() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        let store = try ProfileStore(path: path)
        try store.save(keyA, sampleProfile())
        let keyV = ProfileKey(device: "d", drafter: "v", server: "s", target: "t")
        let keyL = ProfileKey(device: "d", drafter: "l", server: "s", target: "t")
        let keyB = ProfileKey(device: "d", drafter: "b", server: "s", target: "t")
        try store.save(keyV, sampleProfile())
        try store.save(keyL, sampleProfile())
        try store.save(keyB, sampleProfile())
        let raw = try DatabaseQueue(path: path)
        try raw.write { db in
            try db.execute(sql: "UPDATE profile SET data = '{not json' WHERE drafter = 'ngram'")
            // Decodes, but fails validated(): another version, and arrays of the wrong length.
            var other = sampleProfile()
            other.version = 99
            let json = String(decoding: try JSONEncoder().encode(other), as: UTF8.self)
            try db.execute(sql: "UPDATE profile SET data = ? WHERE drafter = 'v'", arguments: [json])
            var short = sampleProfile()
            short.targetMilliseconds = [1, 2]
            let json2 = String(decoding: try JSONEncoder().encode(short), as: UTF8.self)
            try db.execute(sql: "UPDATE profile SET data = ? WHERE drafter = 'l'", arguments: [json2])
            // Wrong storage types everywhere (a blob for the JSON, text for the count and date).
            try db.execute(sql: "UPDATE profile SET data = x'00ff', rounds = 'many', updated_at = 'never' WHERE drafter = 'b'")
        }

        func reason(_ key: ProfileKey) -> String? {
            do {
                _ = try store.load(key)
                return nil
            } catch {
                guard case let .invalidProfile(p, _, k, reason) = error, p == path, k == key else { return "wrong error \(error)" }
                return reason
            }
        }
        #expect(reason(keyA)?.contains("JSON does not decode") == true)
        #expect(reason(keyV)?.contains("profile version 99") == true)
        #expect(reason(keyL)?.contains("wrong length") == true)
        #expect(reason(keyB)?.contains("JSON does not decode") == true)

        let list = try store.list()
        #expect(list.count == 4)
        #expect(list.allSatisfy { $0.problem != nil && $0.targetMillisecondsPerToken == nil })
        #expect(throws: ProfileStoreError.self) { try store.record(id: list[0].id) }

        // The store stays usable: saving replaces a bad row.
        try store.save(keyA, sampleProfile(seed: 3))
        #expect(try store.load(keyA) == sampleProfile(seed: 3))
        // openOrRecover leaves a healthy file with bad rows alone.
        let (_, warning) = try ProfileStore.openOrRecover(path: path)
        #expect(warning == nil)
    }

    @Test func invalidProfilesAreNotSaved() throws {
        let dir = try Scratch()
        let store = try ProfileStore(path: dir.file("p.sqlite"))
        var bad = sampleProfile()
        bad.samplingMilliseconds = .nan
        #expect {
            try store.save(keyA, bad)
        } throws: { error in
            guard case .unencodableProfile = error as? ProfileStoreError else { return false }
            return true
        }
        #expect(try store.list().isEmpty)
    }

    @Test func unwritablePlacesAreTypedErrors() throws {
        let dir = try Scratch()
        let blocker = dir.file("not-a-dir")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let path = blocker + "/sub/profiles.sqlite"
        #expect {
            _ = try ProfileStore.openOrRecover(path: path)
        } throws: { error in
            guard case let .unwritable(p, reason) = error as? ProfileStoreError else { return false }
            return p == path && reason.contains("not-a-dir")
        }
        // A directory where the file should be.
        let asDirectory = dir.file("dir.sqlite")
        try FileManager.default.createDirectory(atPath: asDirectory, withIntermediateDirectories: true)
        #expect {
            _ = try ProfileStore.openOrRecover(path: asDirectory)
        } throws: { error in
            guard case .unwritable = error as? ProfileStoreError else { return false }
            return true
        }
        #expect(FileManager.default.fileExists(atPath: asDirectory))
        // Read-only permissions (only meaningful when not root: root writes anyway).
        if getuid() != 0 {
            let ro = dir.file("ro")
            try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
            chmod(ro, 0o555)
            defer { chmod(ro, 0o755) }
            #expect(throws: ProfileStoreError.self) { try ProfileStore.openOrRecover(path: ro + "/profiles.sqlite") }
        }
    }

    @Test func concurrentSavesFromTwoStores() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        let stores = [try ProfileStore(path: path), try ProfileStore(path: path)]
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 2) { s in
            for i in 0..<60 {
                do {
                    // Each writes its own keys and fights over a shared one.
                    try stores[s].save(ProfileKey(device: "store\(s)", drafter: "d\(i % 10)", server: "local", target: "t"), sampleProfile(seed: Double(i + 1), rounds: i))
                    try stores[s].save(keyA, sampleProfile(seed: Double(s + 1), rounds: i))
                    _ = try stores[1 - s].load(keyA)
                } catch {
                    failures.add("\(error)")
                }
            }
        }
        #expect(failures.all.isEmpty)
        let (fresh, warning) = try ProfileStore.openOrRecover(path: path)
        #expect(warning == nil)
        let list = try fresh.list()
        #expect(list.count == 21)
        for s in 0..<2 {
            for d in 0..<10 {
                let key = ProfileKey(device: "store\(s)", drafter: "d\(d)", server: "local", target: "t")
                #expect(try fresh.load(key) == sampleProfile(seed: Double(50 + d + 1), rounds: 50 + d))
            }
        }
        #expect(try fresh.load(keyA)?.rounds == 59)
    }

    @Test func concurrentFirstOpens() throws {
        let dir = try Scratch()
        let path = dir.file("profiles.sqlite")
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            do {
                let (store, warning) = try ProfileStore.openOrRecover(path: path)
                if let warning { failures.add(warning) }
                try store.save(ProfileKey(device: "\(i)", drafter: "d", server: "s", target: "t"), sampleProfile())
            } catch {
                failures.add("\(error)")
            }
        }
        #expect(failures.all.isEmpty)
        #expect(try ProfileStore(path: path).list().count == 4)
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    var all: [String] { lock.withLock { items } }
}

@Suite("Token counts for VocabTrim") struct TokenCountTests {
    @Test("Counts add up per vocabulary, come back most frequent first, and clear per vocabulary")
    func countsAccumulate() throws {
        let scratch = try Scratch()
        let store = try ProfileStore(path: scratch.file("p.sqlite"))
        try store.addTokenCounts(vocabulary: "aa", [5: 2, 7: 1, 9: 0])
        try store.addTokenCounts(vocabulary: "aa", [7: 4, 3: 1])
        try store.addTokenCounts(vocabulary: "bb", [1: 1])
        let aa = try store.tokenCounts(vocabulary: "aa")
        #expect(aa.map(\.token) == [7, 5, 3] && aa.map(\.count) == [5, 2, 1])
        // Another process (a second connection) sees them; profiles are untouched.
        let again = try ProfileStore(path: scratch.file("p.sqlite"))
        #expect(try again.tokenCounts(vocabulary: "aa").count == 3)
        #expect(try again.list().isEmpty)
        #expect(try store.clearTokenCounts(vocabulary: "aa") == 3)
        #expect(try store.tokenCounts(vocabulary: "aa").isEmpty && (try store.tokenCounts(vocabulary: "bb")).count == 1)
        // Rows that are not counts (written by something else) are skipped, not trusted.
        let db = try DatabaseQueue(path: scratch.file("p.sqlite"))
        try db.write { try $0.execute(sql: "INSERT INTO token_count VALUES ('bb', 'x', 3), ('bb', 4, -2), ('bb', 8, 'many')") }
        #expect(try store.tokenCounts(vocabulary: "bb").map(\.token) == [1])
    }
}

@Suite struct ProfilePathsAndKeyTests {
    @Test func dataDirectory() {
        let home = ["HOME": "/home/u"]
        #expect(ArborPaths.dataDirectory(environment: home, create: false).path == "/home/u/.local/share/arbor")
        #expect(ArborPaths.dataDirectory(environment: home.merging(["XDG_DATA_HOME": "/x"]) { $1 }, create: false).path == "/x/arbor")
        // A relative XDG value is ignored.
        #expect(ArborPaths.dataDirectory(environment: home.merging(["XDG_DATA_HOME": "rel"]) { $1 }, create: false).path == "/home/u/.local/share/arbor")
        #expect(ArborPaths.dataDirectory(environment: home.merging(["XDG_DATA_HOME": "/x", "ARBOR_DATA_DIR": "/d"]) { $1 }, create: false).path == "/d")
        #expect(ArborPaths.dataDirectory(environment: home.merging(["ARBOR_DATA_DIR": "~/arbor"]) { $1 }, create: false).path == "/home/u/arbor")
        #expect(ArborPaths.profileDatabase(environment: ["ARBOR_DATA_DIR": "/d"], create: false).path == "/d/profiles.sqlite")
    }

    @Test func dataDirectoryIsCreated() throws {
        let dir = try Scratch()
        let url = ArborPaths.dataDirectory(environment: ["ARBOR_DATA_DIR": dir.file("x/y")])
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    @Test func deviceName() {
        let cpuinfo = """
            processor\t: 0
            vendor_id\t: AuthenticAMD
            model name\t: AMD Ryzen 9   7950X 16-Core Processor   
            flags\t\t: fpu vme

            processor\t: 1
            model name\t: something else
            """
        #expect(ProfileKey.cpuModel(cpuinfo: cpuinfo) == "AMD Ryzen 9 7950X 16-Core Processor")
        #expect(ProfileKey.cpuModel(cpuinfo: "processor : 0\n") == nil)
        #expect(ProfileKey.deviceName(host: "box", cpu: "AMD EPYC") == "box (AMD EPYC)")
        #expect(ProfileKey.deviceName(host: "box", cpu: nil) == "box")
        #expect(ProfileKey.deviceName(host: " ", cpu: nil) == "unknown")
        #expect(!ProfileKey.thisDevice.isEmpty)
        #expect(ProfileKey.thisDevice == ProfileKey.thisDevice)
    }
}
