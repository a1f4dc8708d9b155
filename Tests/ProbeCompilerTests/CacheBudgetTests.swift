import Testing
import Glibc
import KprobeSupport
import TestSupport
@testable import ProbeCompiler

/// Issue 14.4 and 14.5: temporaries of killed compiles are removed, and objects and precompiled
/// headers are kept within a bound, least recently used first.
@Suite struct CacheBudgetTests {
    /// A pid above pid_max: a writer that cannot be alive.
    static let deadPID = "2147483647"

    private func file(_ path: String, bytes: Int, age: Int) throws {
        try FileSystem.writeAtomically([UInt8](repeating: 0x5a, count: bytes), to: path)
        var times = [timespec(tv_sec: time(nil) - age, tv_nsec: 0), timespec(tv_sec: time(nil) - age, tv_nsec: 0)]
        guard utimensat(AT_FDCWD, path, &times, 0) == 0 else { throw Errno.current }
    }

    private func cache() throws -> (ScratchDirectory, CacheRoot) {
        let scratch = try ScratchDirectory()
        let root = CacheRoot(path: scratch.path + "/cache")
        try root.directory("objects")
        try root.directory("pch")
        return (scratch, root)
    }

    @Test func leastRecentlyUsedGoFirstUntilTheRestFits() throws {
        let (scratch, root) = try cache()
        defer { withExtendedLifetime(scratch) {} }
        try file(root.path + "/objects/old.o", bytes: 400 << 10, age: 3000)
        try file(root.path + "/objects/old.deps", bytes: 100, age: 3000)
        try file(root.path + "/pch/middle.pch", bytes: 400 << 10, age: 2000)
        try file(root.path + "/objects/new.o", bytes: 400 << 10, age: 10)
        try file(root.path + "/objects/new.deps", bytes: 100, age: 10)
        var budget = CacheBudget(root: root, environment: [CacheBudget.environmentVariable: "1"])
        #expect(budget.maxBytes == 1 << 20)
        let removed = budget.enforce()
        #expect(removed == [root.path + "/objects/old.o", root.path + "/objects/old.deps"])
        #expect(FileSystem.exists(root.path + "/pch/middle.pch"))
        // A use moves an entry to the back of the queue.
        CacheBudget.touch(root.path + "/pch/middle.pch")
        budget.maxBytes = 500 << 10
        #expect(budget.enforce() == [root.path + "/objects/new.o", root.path + "/objects/new.deps"])
        #expect(budget.enforce(all: true) == [root.path + "/pch/middle.pch"])
        #expect(budget.usedBytes == 0)
    }

    @Test func defaultBoundAndItsVariable() {
        let root = CacheRoot(path: "/nonexistent")
        #expect(CacheBudget(root: root, environment: [:]).maxBytes == CacheBudget.defaultBytes)
        #expect(CacheBudget(root: root, environment: [CacheBudget.environmentVariable: "300"]).maxBytes == 300 << 20)
        #expect(CacheBudget(root: root, environment: [CacheBudget.environmentVariable: "lots"]).maxBytes == CacheBudget.defaultBytes)
    }

    @Test func temporariesOfDeadWritersAreRemovedAndLiveOnesKept() throws {
        let (scratch, root) = try cache()
        defer { withExtendedLifetime(scratch) {} }
        let dead = [root.path + "/pch/btf-x-0123.pch.tmp.\(Self.deadPID)", root.path + "/pch/.btf-x-0123.pch.tmp-\(Self.deadPID)-ab",
                    root.path + "/objects/.key.o.tmp-\(Self.deadPID)-cd"]
        let live = root.path + "/pch/." + "btf-y.pch.tmp-\(getpid())-ef"
        for path in dead + [live] { try file(path, bytes: 10, age: 0) }
        let removed = CacheBudget(root: root, environment: [:]).enforce()
        #expect(Set(removed) == Set(dead))
        #expect(FileSystem.exists(live))
    }

    /// A precompiled-header build killed by Ctrl-C leaves its temporary; the next build (under
    /// the lock) removes it.
    @Test func precompiledHeaderBuildRemovesKilledBuildsTemporaries() throws {
        let fixture = try PCHFixture()
        let leftover = fixture.settings.directory + "/btf-test-0000.pch.tmp.\(Self.deadPID)"
        try file(leftover, bytes: 10, age: 0)
        let object = try builtWorker().compile(fixture.request())
        #expect(object.notes.contains { $0.hasPrefix("built precompiled header") })
        #expect(!FileSystem.exists(leftover))
        #expect(try ScratchDirectory.list(fixture.settings.directory).allSatisfy { !$0.contains(".tmp") })
    }
}
