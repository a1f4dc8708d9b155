import ArgumentParser
import Foundation
import Testing
@testable import KprobeRunCLI

/// swift-argument-parser's `AssertParse` pattern: parse a command line as `kprobe-run` would,
/// check it became the expected command, then look at its options.
func parse<Command: ParsableCommand>(
    _ type: Command.Type, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation
) throws -> Command {
    let parsed = try KprobeRunCommand.parse(arguments)
    return try #require(parsed as? Command, "\(arguments) parsed as \(Swift.type(of: parsed))", sourceLocation: sourceLocation)
}

/// The message and status a command line that does not parse ends with, as the user sees them.
func parseFailure(_ arguments: [String]) -> KprobeRunCommand.Outcome {
    do {
        _ = try KprobeRunCommand.parse(arguments)
        return KprobeRunCommand.Outcome(status: 0)
    } catch {
        let code = KprobeRunCommand.exitCode(for: error)
        return KprobeRunCommand.Outcome(
            status: code == .validationFailure ? 2 : code.rawValue,
            stderr: KprobeRunCommand.fullMessage(for: error))
    }
}

/// The options a command declares, from the parser's own description of it (`--experimental-dump-help`).
struct DeclaredArgument: Decodable {
    struct Name: Decodable {
        var kind: String
        var name: String
        var spelled: String { (kind == "long" ? "--" : "-") + name }
    }
    var kind: String
    var names: [Name]?
    var preferredName: Name?
    var isRepeating: Bool

    /// How the option is written on a command line (nil for a positional argument).
    var spelling: String? { preferredName?.spelled }

    private struct Dump: Decodable {
        struct Command: Decodable { var arguments: [DeclaredArgument]? }
        var command: Command
    }

    static func of<Command: ParsableArguments>(_ type: Command.Type) throws -> [DeclaredArgument] {
        let dump = try JSONDecoder().decode(Dump.self, from: Data(type._dumpHelp().utf8))
        return dump.command.arguments ?? []
    }
}

/// A parsed options value as text, field by field, so two parses can be compared whatever types
/// the options have: each property wrapper prints the value it holds.
func fingerprint(_ value: Any) -> String {
    Mirror(reflecting: value).children.map { child in
        "\(child.label ?? "?")=\(child.value)"
    }.joined(separator: " ")
}
