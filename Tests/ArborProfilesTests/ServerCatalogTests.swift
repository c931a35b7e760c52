import Foundation
import Testing
@testable import ArborProfiles

@Suite("The web UI's server catalog")
struct ServerCatalogTests {
    @Test("Servers are saved, replaced, listed in name order and removed; they survive reopening")
    func roundTrip() throws {
        let dir = try Scratch()
        let path = dir.file("servers.sqlite")
        let catalog = try ServerCatalog(path: path)
        try catalog.save(CatalogServer(name: "zeta", host: "10.0.0.2", port: 7878, token: "t"))
        try catalog.save(CatalogServer(name: " alpha ", host: "example.org", port: 9000))
        try catalog.save(CatalogServer(name: "zeta", host: "10.0.0.3", port: 7879))
        #expect(try catalog.all().map(\.name) == ["alpha", "zeta"])
        #expect(try catalog.server(named: "zeta") == CatalogServer(name: "zeta", host: "10.0.0.3", port: 7879))
        let reopened = try ServerCatalog(path: path)
        #expect(try reopened.all().count == 2)
        #expect(try reopened.remove(named: "alpha"))
        #expect(try !reopened.remove(named: "alpha"))
        #expect(try reopened.all().map(\.name) == ["zeta"])
        withExtendedLifetime(dir) {}
    }

    @Test("Bad fields are refused with a reason, and nothing is stored")
    func badFields() throws {
        let dir = try Scratch()
        let catalog = try ServerCatalog(path: dir.file("servers.sqlite"))
        for bad in [CatalogServer(name: "", host: "h", port: 1), CatalogServer(name: "a", host: "", port: 1),
                    CatalogServer(name: "a", host: "two words", port: 1), CatalogServer(name: "a", host: "h", port: 0),
                    CatalogServer(name: "a", host: "h", port: 70000)] {
            #expect(throws: ServerCatalogError.self) { try catalog.save(bad) }
        }
        #expect(try catalog.all().isEmpty)
        withExtendedLifetime(dir) {}
    }

    @Test("A corrupt catalog is moved aside with a warning and a fresh one used")
    func corruptFile() throws {
        let dir = try Scratch()
        let path = dir.file("servers.sqlite")
        try Data(repeating: 0x5A, count: 4096).write(to: URL(fileURLWithPath: path))
        #expect(throws: ServerCatalogError.self) { try ServerCatalog(path: path) }
        let (catalog, warning) = try ServerCatalog.openOrRecover(path: path)
        #expect(warning?.contains("moved it to") == true)
        #expect(try catalog.all().isEmpty)
        try catalog.save(CatalogServer(name: "a", host: "h", port: 1))
        #expect(try dir.names(startingWith: "servers.sqlite.corrupt-").count == 1)
        withExtendedLifetime(dir) {}
    }
}
