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
}
