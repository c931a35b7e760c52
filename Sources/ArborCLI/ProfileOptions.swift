import ArborEngine
import ArborProfiles
import ArgumentParser
import Foundation

/// Where learned cost profiles live, for commands that speculate.
struct ProfileOptions: ParsableArguments {
    @Option(name: .customLong("profile-db"), help: "Profile database (default: <data dir>/profiles.sqlite; data dir: $ARBOR_DATA_DIR, $XDG_DATA_HOME/arbor or ~/.local/share/arbor).")
    var database: String?
    @Flag(name: .customLong("no-profile"), help: "Start from an empty profile and store nothing.")
    var noProfile = false

    static func dataDirectory() -> URL { ArborPaths.dataDirectory() }

    /// The database path in effect.
    var databasePath: String { database ?? ArborPaths.profileDatabase().path }
}
