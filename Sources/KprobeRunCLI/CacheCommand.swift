import ArgumentParser
import KprobeSupport
import ProbeCompiler

/// `kprobe-run cache …`: what compiles keep in the cache, and its bound.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Show or trim the compiled objects and precompiled headers kept in the cache.",
        discussion: """
            Objects and precompiled headers are kept up to \(CacheBudget.defaultBytes >> 20) MiB (set \
            \(CacheBudget.environmentVariable) to change it); past that the least recently used are removed \
            after a compile. Header trees are managed with `kprobe-run headers`.
            """,
        subcommands: [Status.self, Prune.self]
    )

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the space used and the bound.")
        func run() throws {
            let budget = CacheBudget(root: CacheRoot.resolve())
            let items = budget.items()
            print("cache: \(budget.root.path)")
            for directory in ["objects", "pch"] {
                let mine = items.filter { $0.directory.hasSuffix("/" + directory) }
                print("\(directory): \(mine.count) entries, \(mine.reduce(0) { $0 + $1.bytes } >> 10) KiB")
            }
            print("bound: \(budget.maxBytes >> 20) MiB (\(CacheBudget.environmentVariable)), in use: \(budget.usedBytes >> 10) KiB")
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove the least recently used entries beyond the bound (with --all, every one).")
        @Flag(name: .long, help: "Remove every compiled object and precompiled header.")
        var all = false
        func run() throws {
            for removed in CacheBudget(root: CacheRoot.resolve()).enforce(all: all) {
                print("removed \(removed)")
            }
        }
    }
}
