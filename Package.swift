// swift-tools-version:6.0
import PackageDescription

let llvmInclude = "/usr/lib/llvm-14/include"

let package = Package(
    name: "kprobe-run",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kprobe-run", targets: ["kprobe-run"]),
        .executable(name: "kprobe-run-cc", targets: ["kprobe-run-cc"]),
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
                .linkedLibrary("clang-cpp14"),
                .linkedLibrary("LLVM-14"),
            ]
        ),

        // Shared by every stage: errors and exit codes, digests, the secure cache root.
        .target(name: "KprobeSupport"),
        // Stage 1: find kernel headers or types and keep them in the cache.
        .target(name: "KernelHeaders", dependencies: ["KprobeSupport", "CLibArchive", "CLibELF", "CLibBPF"]),
        // Stage 2: the parent's side of compiling (requests, worker protocol). No LLVM here.
        .target(name: "ProbeCompiler", dependencies: ["KprobeSupport"]),
        // Dialect detection and rewriting (BCC), used only inside the worker.
        .target(
            name: "ProbeFrontend",
            dependencies: ["KprobeSupport", "ProbeCompiler", "CClang"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        // The compile worker: the only executable that links clang/LLVM.
        .executableTarget(
            name: "kprobe-run-cc",
            dependencies: ["ProbeCompiler", "ProbeFrontend", "CClangBPF"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        // Stage 3: load, attach, report, detach.
        .target(name: "ProbeRuntime", dependencies: ["KprobeSupport", "CLibBPF", "CLibELF"]),
        // --adb: the host's side of tracing an Android device (adb, device binary, device headers).
        .target(name: "ProbeRemote", dependencies: ["KprobeSupport", "KernelHeaders"]),
        // Stage 4: the commands.
        .target(
            name: "KprobeRunCLI",
            dependencies: [
                "KprobeSupport", "KernelHeaders", "ProbeCompiler", "ProbeRuntime", "ProbeRemote",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "kprobe-run", dependencies: ["KprobeRunCLI"]),

        .testTarget(name: "KprobeSupportTests", dependencies: ["KprobeSupport"]),
        .testTarget(name: "KernelHeadersTests", dependencies: ["KernelHeaders", "KprobeSupport"]),
        .testTarget(name: "ProbeCompilerTests", dependencies: ["ProbeCompiler", "KprobeSupport"]),
        .testTarget(
            name: "ProbeFrontendTests",
            dependencies: ["ProbeFrontend", "ProbeCompiler", "KprobeSupport"],
            swiftSettings: [.unsafeFlags(["-Xcc", "-I\(llvmInclude)"])]
        ),
        .testTarget(name: "ProbeRuntimeTests", dependencies: ["ProbeRuntime", "KprobeSupport"]),
        .testTarget(name: "ProbeRemoteTests", dependencies: ["ProbeRemote", "KprobeSupport", "KernelHeaders"]),
        .testTarget(name: "KprobeRunCLITests", dependencies: ["KprobeRunCLI", "KprobeSupport"]),
        // Run the real binaries as root against the running kernel (and the test VM).
        .testTarget(name: "IntegrationTests", dependencies: ["KprobeSupport", "CLibBPF"]),
    ],
    swiftLanguageModes: [.v6]
)
