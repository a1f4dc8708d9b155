// swift-tools-version:6.0
import PackageDescription

let llvmInclude = "/usr/lib/llvm-14/include"
let llvmLibraries = "/usr/lib/llvm-14/lib"

// clang and LLVM 14 as static archives (llvm-14-dev, libclang-14-dev): the worker then carries only
// the objects a BPF compile reaches, and has none of the start-up relocations of the shared libraries
// (libLLVM-14 and libclang-cpp alone cost 71 MiB of resident memory before compiling anything; the
// static worker compiles a kernel-header probe in about 75 MiB in all). The linker picks the members
// it needs.
let clangLLVMArchives = [
    "clangCodeGen", "clangFrontend", "clangDriver", "clangParse", "clangSerialization", "clangSema",
    "clangEdit", "clangAnalysis", "clangAST", "clangASTMatchers", "clangLex", "clangBasic",
    "LLVMCoverage", "LLVMOption", "LLVMLTO", "LLVMExtensions", "LLVMPasses", "LLVMObjCARCOpts",
    "LLVMCoroutines", "LLVMBPFDisassembler", "LLVMMCDisassembler", "LLVMBPFAsmParser", "LLVMBPFCodeGen",
    "LLVMSelectionDAG", "LLVMipo", "LLVMInstrumentation", "LLVMVectorize", "LLVMLinker", "LLVMIRReader",
    "LLVMAsmParser", "LLVMFrontendOpenMP", "LLVMBPFDesc", "LLVMBPFInfo", "LLVMAsmPrinter", "LLVMDebugInfoMSF",
    "LLVMCodeGen", "LLVMTarget", "LLVMScalarOpts", "LLVMInstCombine", "LLVMAggressiveInstCombine",
    "LLVMTransformUtils", "LLVMBitWriter", "LLVMAnalysis", "LLVMProfileData", "LLVMDebugInfoDWARF",
    "LLVMObject", "LLVMTextAPI", "LLVMMCParser", "LLVMMC", "LLVMDebugInfoCodeView", "LLVMBitReader",
    "LLVMCore", "LLVMRemarks", "LLVMBitstreamReader", "LLVMBinaryFormat", "LLVMSupport", "LLVMDemangle",
]

let package = Package(
    name: "kprobe-run",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kprobe-run", targets: ["kprobe-run"]),
        .executable(name: "kprobe-run-cc", targets: ["kprobe-run-cc"]),
        .executable(name: "kprobe-run-bcc", targets: ["kprobe-run-bcc"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C libraries from Debian, behind thin module maps.
        .systemLibrary(name: "CLibBPF", path: "Sources/CLibBPF", pkgConfig: "libbpf"),
        .systemLibrary(name: "CLibArchive", path: "Sources/CLibArchive", pkgConfig: "libarchive"),
        .systemLibrary(name: "CLibELF", path: "Sources/CLibELF", pkgConfig: "libelf"),
        // libclang's C API, for reading probe ASTs (BCC dialect rewriting) inside the worker.
        .systemLibrary(name: "CClang", path: "Sources/CClang"),
        // The clang/LLVM 14 shim: C++ inside, a plain C header outside.
        .target(
            name: "CClangBPF",
            path: "Sources/CClangBPF",
            cxxSettings: [
                .unsafeFlags(["-I\(llvmInclude)", "-fno-exceptions", "-std=c++17"]),
            ],
            linkerSettings: [
                .unsafeFlags(["-L\(llvmLibraries)", "-Xlinker", "--start-group"]
                    + clangLLVMArchives.flatMap { ["-Xlinker", "-l\($0)"] }
                    + ["-Xlinker", "--end-group"]),
                .linkedLibrary("tinfo"),
                .linkedLibrary("z"),
            ]
        ),
        // SHA-256 block compression with the CPU's SHA-256 instructions (x86-64 SHA-NI, ARMv8
        // Crypto Extension), chosen at run time; KprobeSupport.SHA256 falls back to Swift.
        .target(name: "CSHA256", path: "Sources/CSHA256"),

        // Shared by every stage: errors and exit codes, digests, the secure cache root, and the
        // plumbing (owned descriptors, retryOnInterrupt, child processes, atomic files, locks,
        // kallsyms, ELF sections).
        .target(name: "KprobeSupport", dependencies: ["CLibELF", "CSHA256"]),
        // Stage 1: find kernel headers or types and keep them in the cache.
        .target(name: "KernelHeaders", dependencies: ["KprobeSupport", "CLibArchive", "CLibELF", "CLibBPF"]),
        // Stage 2: the parent's side of compiling (requests, worker protocol). No LLVM here.
        .target(name: "ProbeCompiler", dependencies: ["KprobeSupport"]),
        // BCC rewriting through libclang, used only by kprobe-run-bcc.
        .target(
            name: "BCCRewriter",
            dependencies: ["KprobeSupport", "ProbeCompiler", "CClang"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        // The compile worker: clang/LLVM linked statically, nothing else of LLVM's.
        .executableTarget(
            name: "kprobe-run-cc",
            dependencies: ["KprobeSupport", "ProbeCompiler", "CClangBPF"],
            // Position-dependent: a PIE would relocate LLVM's 6 MiB of pointer tables at every start.
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-no-pie"])]
        ),
        // The BCC rewriter (libclang, with its shared LLVM), run before the worker for BCC programs.
        .executableTarget(
            name: "kprobe-run-bcc",
            dependencies: ["ProbeCompiler", "BCCRewriter"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        // Stage 3: load, attach, report, detach.
        // (ProbeCompiler for its reader of tracepoint format files, which -l -v shows.)
        .target(name: "ProbeRuntime", dependencies: ["KprobeSupport", "ProbeCompiler", "CLibBPF", "CLibELF"]),
        // --adb: the host's side of tracing an Android device (adb, device binary, device headers).
        .target(name: "ProbeRemote", dependencies: ["KprobeSupport", "KernelHeaders"]),
        // Stage 4: the commands.
        .target(
            name: "KprobeRunCLI",
            dependencies: [
                "KprobeSupport", "KernelHeaders", "ProbeCompiler", "ProbeRuntime", "ProbeRemote", "CLibBPF",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "kprobe-run", dependencies: ["KprobeRunCLI"]),

        // What every test target shares: scratch directories, the paths of the shared test
        // inputs, and the test tiers (tags).
        .target(name: "TestSupport", dependencies: ["KprobeSupport"], path: "Tests/TestSupport"),
        .testTarget(name: "KprobeSupportTests", dependencies: ["KprobeSupport", "TestSupport"]),
        .testTarget(name: "KernelHeadersTests", dependencies: ["KernelHeaders", "KprobeSupport", "TestSupport"]),
        .testTarget(name: "ProbeCompilerTests", dependencies: ["ProbeCompiler", "KprobeSupport", "TestSupport"]),
        .testTarget(
            name: "BCCRewriterTests",
            dependencies: ["BCCRewriter", "ProbeCompiler", "KprobeSupport", "TestSupport"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        .testTarget(name: "ProbeRuntimeTests", dependencies: ["ProbeRuntime", "KprobeSupport", "TestSupport"]),
        .testTarget(name: "ProbeRemoteTests", dependencies: ["ProbeRemote", "KprobeSupport", "KernelHeaders", "TestSupport"]),
        .testTarget(name: "KprobeRunCLITests", dependencies: ["KprobeRunCLI", "KprobeSupport", "TestSupport"]),
        // Seeded mutation loops over every reader of untrusted input (archives, ELF, the worker
        // protocol), bounded in time so that CI runs them.
        .testTarget(name: "FuzzTests", dependencies: ["KernelHeaders", "ProbeCompiler", "KprobeSupport", "CLibArchive", "TestSupport"]),
        // Run the real binaries as root against the running kernel (and the test VM).
        .testTarget(name: "IntegrationTests", dependencies: ["KprobeSupport", "CLibBPF", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
