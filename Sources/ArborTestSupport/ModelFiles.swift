import ArborStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The real models of MODELS.md as the tests find them on this machine.
///
/// Models live in `$ARBOR_MODELS_DIR`, else `$XDG_CACHE_HOME/arbor/models`, else
/// `~/.cache/arbor/models`, as `<alias>.gguf` (what `arbor models pull` writes). Tests that
/// need one are enabled only when it is there — unless `ARBOR_REQUIRE_MODELS=1` (set by the test
/// script), when a missing model is a failure rather than a silent skip.
public enum ModelFiles {
    public static let smollm2 = "smollm2-135m"
    public static let qwenDraft = "qwen2.5-coder-0.5b"
    public static let qwenTarget = "qwen2.5-coder-1.5b"
    public static let gemma3 = "gemma3-270m"
    public static let all = [smollm2, qwenDraft, qwenTarget, gemma3]

    /// Exactly where `arbor models pull` puts them (the store's own rule).
    public static var directory: String { ModelStore.defaultDirectory().path }

    public static func path(_ alias: String) -> String { directory + "/" + alias + ".gguf" }

    public static func exists(_ alias: String) -> Bool {
        var st = stat()
        return stat(path(alias), &st) == 0
    }

    /// Whether tests should fail rather than skip when a model is missing.
    public static var required: Bool { environment("ARBOR_REQUIRE_MODELS") == "1" }

    /// Enable a test for `alias`: true if the file exists, or if models are required (the test
    /// then fails loudly on the missing file).
    public static func available(_ alias: String) -> Bool { exists(alias) || required }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }
}
