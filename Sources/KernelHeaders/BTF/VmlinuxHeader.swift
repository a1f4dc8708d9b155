import CLibBPF
import KprobeSupport

#if canImport(Glibc)
import Glibc
#endif

/// vmlinux.h: every type of the kernel's BTF as C, written with libbpf's btf_dump in the shape
/// libbpf-tools probes expect (include guard, preserve_access_index on every record for CO-RE).
enum VmlinuxHeader {
    static let systemBTF = "/sys/kernel/btf/vmlinux"
    static let fileName = "vmlinux.h"
    static let lockName = ".lock"

    static let prologue = """
    #ifndef __VMLINUX_H__
    #define __VMLINUX_H__

    #ifndef BPF_NO_PRESERVE_ACCESS_INDEX
    #pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
    #endif


    """

    /// The last lines of the file. A file written before kfunc declarations were added ends
    /// differently, so it is not taken as complete and is generated again.
    static let epilogue = """

    /* kprobe-run vmlinux.h format 3: types, then kfunc declarations */
    #ifndef BPF_NO_PRESERVE_ACCESS_INDEX
    #pragma clang attribute pop
    #endif

    #endif /* __VMLINUX_H__ */

    """

    /// `<cache>/btf/<entry>/vmlinux.h`, generated from `btfPath` unless a complete one is there.
    /// Returns the directory and whether it was generated now.
    static func cached(cache: CacheRoot, entry: String, btfPath: String, showProgress: Bool,
                       log: @Sendable (String) -> Void) throws(HeaderError) -> (directory: String, generated: Bool) {
        let directory: String
        do {
            directory = try cache.directory("btf", entry)
        } catch {
            throw HeaderError(error)
        }
        let opened = try OpenDirectory(directory)
        let fd = opened.fd
        if isComplete(in: fd) { return (directory, false) }

        let lock = try CacheLock(lockName, in: fd, display: directory + "/" + lockName, log: log)
        defer { lock.held() }
        if isComplete(in: fd) { return (directory, false) }
        if showProgress { Progress.line("kprobe-run: generating vmlinux.h from \(btfPath)…") }
        defer { if showProgress { Progress.clear() } }
        let started = MonotonicClock.now
        try generate(from: btfPath, into: fd, display: directory)
        log("generated \(directory)/\(fileName) from \(btfPath) in \(MonotonicClock.milliseconds(since: started)) ms")
        return (directory, true)
    }

    /// Written atomically, so a file that ends with the epilogue is whole.
    static func isComplete(in dirFD: Int32) -> Bool {
        guard let file = try? FileDescriptor.open(fileName, relativeTo: dirFD, O_RDONLY | O_NOFOLLOW),
              let st = try? file.status() else { return false }
        let tail = Array(epilogue.utf8)
        guard (st.st_mode & S_IFMT) == S_IFREG, Int(st.st_size) > tail.count else { return false }
        var bytes = [UInt8](repeating: 0, count: tail.count)
        let n = bytes.withUnsafeMutableBytes { pread(file.rawValue, $0.baseAddress, $0.count, off_t(Int(st.st_size) - tail.count)) }
        return n == tail.count && bytes == tail
    }

    static func generate(from btfPath: String, into dirFD: Int32, display: String) throws(HeaderError) {
        guard let btf = btf__parse(btfPath, nil) else {
            let err = Errno.current
            throw HeaderError("cannot read kernel BTF from \(btfPath): \(err); the kernel needs CONFIG_DEBUG_INFO_BTF, or pass --headers with a header tree or archive",
                              kind: err.isPermission ? .notPermitted : .noKernelHeaders)
        }
        defer { btf__free(btf) }

        let temporary = AtomicFile.temporaryName(for: fileName)
        let fd = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0, let file = fdopen(fd, "w") else {
            let err = Errno.current
            if fd >= 0 { close(fd) }
            throw HeaderError("cannot create \(display)/\(temporary): \(err); set KPROBE_RUN_CACHE_DIR to a writable directory")
        }
        var closed = false
        defer {
            if !closed { fclose(file) }
        }
        do throws(HeaderError) {
            try write(btf, to: file, display: display)
            guard fflush(file) == 0, ferror(file) == 0, fsync(fd) == 0 else {
                throw HeaderError("cannot write \(display)/\(fileName): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
            }
            closed = true
            guard fclose(file) == 0 else { throw HeaderError("cannot write \(display)/\(fileName): \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory") }
            guard renameat(dirFD, temporary, dirFD, fileName) == 0 else {
                throw HeaderError("cannot move \(display)/\(temporary) into place: \(Errno.current); set KPROBE_RUN_CACHE_DIR to a writable directory")
            }
            fsync(dirFD)
        } catch {
            unlinkat(dirFD, temporary, 0)
            throw error
        }
    }

    private static func write(_ btf: OpaquePointer, to file: UnsafeMutablePointer<FILE>, display: String) throws(HeaderError) {
        guard let dump = kprobe_run_btf_dump_to_file(btf, file) else {
            throw HeaderError("libbpf cannot dump BTF as C: \(Errno.current)", kind: .internal)
        }
        defer { btf_dump__free(dump) }
        fputs(prologue, file)
        let count = btf__type_cnt(btf)
        var id: UInt32 = 1
        while id < count {
            let status = btf_dump__dump_type(dump, id)
            guard status >= 0 else {
                throw HeaderError("libbpf cannot dump BTF type \(id) as C: \(Errno(-status)); write vmlinux.h with bpftool and pass its directory with --headers", kind: .internal)
            }
            id += 1
        }
        try writeKfuncDeclarations(btf, dump: dump, to: file)
        fputs(epilogue, file)
    }

    static let kfuncPrologue = """

    #ifndef BPF_NO_KFUNC_PROTOTYPES
    #ifndef __ksym
    #define __ksym __attribute__((section(".ksyms")))
    #endif
    #ifndef __weak
    #define __weak __attribute__((weak))
    #endif

    """

    /// The kernel's kfuncs (functions tagged "bpf_kfunc") as `extern … __weak __ksym;`, as bpftool
    /// writes them: a probe calls them without declaring them, and `bpf_ksym_exists` works on them.
    /// A probe that declares them itself defines BPF_NO_KFUNC_PROTOTYPES.
    private static func writeKfuncDeclarations(_ btf: OpaquePointer, dump: OpaquePointer, to file: UnsafeMutablePointer<FILE>) throws(HeaderError) {
        fputs(kfuncPrologue, file)
        var written = Set<UInt32>()
        let count = btf__type_cnt(btf)
        var id: UInt32 = 1
        while id < count {
            defer { id += 1 }
            guard let function = kfunc(tagged: id, in: btf), written.insert(function.id).inserted,
                  let name = btf__name_by_offset(btf, function.type.pointee.name_off) else { continue }
            guard let proto = btf__type_by_id(btf, function.type.pointee.type) else { continue }
            // libbpf 1.1 writes a prototype without parameters as `f()`, which C reads as "any
            // arguments" and libbpf then finds incompatible with the kernel's: write `f(void)`.
            let takesNothing = proto.pointee.info & 0xffff == 0
            fputs("extern ", file)
            let declarator = String(cString: name) + (takesNothing ? "(void)" : "")
            var opts = btf_dump_emit_type_decl_opts()
            opts.sz = MemoryLayout<btf_dump_emit_type_decl_opts>.size
            let status = declarator.withCString { declaratorName in
                opts.field_name = declaratorName
                return btf_dump__emit_type_decl(dump, takesNothing ? proto.pointee.type : function.type.pointee.type, &opts)
            }
            guard status >= 0 else {
                throw HeaderError("libbpf cannot write the declaration of kfunc \(String(cString: name)): \(Errno(-status))", kind: .internal)
            }
            fputs(" __weak __ksym;\n", file)
        }
        fputs("\n#endif /* BPF_NO_KFUNC_PROTOTYPES */\n", file)
    }

    /// The function that the declaration tag `id` marks as a kfunc, if it is one.
    private static func kfunc(tagged id: UInt32, in btf: OpaquePointer) -> (id: UInt32, type: UnsafePointer<btf_type>)? {
        let kindDeclTag: UInt32 = 17, kindFunc: UInt32 = 12
        guard let tag = btf__type_by_id(btf, id), (tag.pointee.info >> 24) & 0x1f == kindDeclTag,
              let tagName = btf__name_by_offset(btf, tag.pointee.name_off), strcmp(tagName, "bpf_kfunc") == 0 else { return nil }
        // A tag on the function itself (component_idx -1), not on one of its parameters.
        let component = UnsafeRawPointer(tag.advanced(by: 1)).load(as: Int32.self)
        let functionID = tag.pointee.type
        guard component == -1, let function = btf__type_by_id(btf, functionID), (function.pointee.info >> 24) & 0x1f == kindFunc else { return nil }
        return (functionID, function)
    }
}

/// One transient status line on stderr (only used when stderr is a terminal).
enum Progress {
    static func line(_ text: String) {
        let bytes = Array(("\r\u{1B}[K" + text).utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }

    static func clear() {
        let bytes = Array("\r\u{1B}[K".utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
