import Testing
import Glibc
import KprobeSupport
import TestSupport

@Suite struct CacheRootTests {
    @Test func environmentOverrideWins() {
        #expect(CacheRoot.resolve(environment: ["KPROBE_RUN_CACHE_DIR": "/x/y"]).path == "/x/y")
    }

    @Test func rootUsesVarCache() throws {
        try #require(geteuid() == 0)
        #expect(CacheRoot.resolve(environment: [:]).path == "/var/cache/kprobe-run")
    }

    @Test func createsPrivateDirectories() throws {
        let base = try ScratchDirectory()
        let cache = CacheRoot(path: base.path + "/cache")
        let inner = try cache.directory("headers", "entry")
        var st = stat()
        #expect(lstat(inner, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o700)
        #expect(lstat(base.path + "/cache", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o700)
    }

    @Test func refusesPlantedSymlink() throws {
        let base = try ScratchDirectory()
        let victim = base.path + "/victim"
        #expect(mkdir(victim, 0o700) == 0)
        #expect(mkdir(base.path + "/cache", 0o700) == 0)
        #expect(symlink(victim, base.path + "/cache/headers") == 0)
        let cache = CacheRoot(path: base.path + "/cache")
        #expect(throws: Failure.self) { try cache.directory("headers", "entry") }
        #expect(!FileSystem.exists(victim + "/entry"))
    }

    @Test func refusesWorldWritable() throws {
        let base = try ScratchDirectory()
        #expect(mkdir(base.path + "/cache", 0o700) == 0)
        chmod(base.path + "/cache", 0o777)
        #expect(throws: Failure.self) { try CacheRoot(path: base.path + "/cache").directory() }
    }

    /// Issue 14.1: a parent another user can write lets that user swap the cache for their own
    /// tree while a compile reads it. Refused, with exit 4 on every path.
    @Test func refusesAParentAnotherUserOwnsOrCanWrite() throws {
        try #require(geteuid() == 0, "needs root to give a directory to another user")
        let base = try ScratchDirectory()
        let theirs = base.path + "/theirs"
        #expect(mkdir(theirs, 0o755) == 0)
        #expect(chown(theirs, 12345, 12345) == 0)
        let refused = #expect(throws: Failure.self) { try CacheRoot(path: theirs + "/cache").directory("headers") }
        #expect(refused?.kind == .noKernelHeaders)
        #expect(refused?.message.contains("uid 12345") == true)
        #expect(!FileSystem.exists(theirs + "/cache/headers"))

        let shared = base.path + "/shared"
        #expect(mkdir(shared, 0o700) == 0)
        chmod(shared, 0o775)
        #expect(throws: Failure.self) { try CacheRoot(path: shared + "/cache").directory() }
        #expect(throws: Failure.self) { try SecureDirectory.check(shared + "/cache") }

        // Through a symlink, the target's parents count.
        #expect(symlink(theirs, base.path + "/link") == 0)
        #expect(throws: Failure.self) { try CacheRoot(path: base.path + "/link/cache").directory() }

        // Sticky and world-writable, as /tmp: others cannot rename what is ours there.
        let sticky = base.path + "/sticky"
        #expect(mkdir(sticky, 0o700) == 0)
        chmod(sticky, 0o1777)
        #expect(throws: Never.self) { try CacheRoot(path: sticky + "/cache").directory("headers") }
    }
}
