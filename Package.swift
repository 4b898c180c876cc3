// swift-tools-version:6.0
// fidq: Fusion-in-Decoder QA and reader-to-retriever distillation as a filesystem-queue worker.
import PackageDescription

// Kernels are plain Swift loops: build them optimised even in debug (naive loops run ~12x slower
// at -Onone) and for AVX2+FMA so float loops vectorise to ymm and `addingProduct` is one vfmadd
// (ref/perf.md §3.3). Machines of this kind are Zen 3 (AVX2, no AVX-512) or Zen 4 (AVX-512): both run haswell code.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-O"], .when(configuration: .debug)),
    .unsafeFlags(["-target-cpu", "haswell"]),
    // Float.squareRoot() is C's sqrtf underneath; with errno in play LLVM keeps it a scalar call
    // and never vectorises a loop around it (Adam's update). The results are the same bits
    // (IEEE square roots are exact to the rounding).
    .unsafeFlags(["-Xcc", "-fno-math-errno"]),
]

// Test targets: the CPU target, but not -O in debug. Optimising the test code itself took a
// fifth of a clean build's CPU time (584 s user, 342 s wall with it; 479 s and 268 s without),
// and the suite runs about as fast: the loops it times are the kernels', built with kernelFlags.
let testFlags: [SwiftSetting] = [
    .unsafeFlags(["-target-cpu", "haswell"]),
    .unsafeFlags(["-Xcc", "-fno-math-errno"]),
]

let package = Package(
    name: "fidq",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "fidq", targets: ["fidq"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(
            name: "CArchive", path: "Sources/CArchive", pkgConfig: "libarchive",
            providers: [.apt(["libarchive-dev"])]),
        // JSON (strict reader, big-array scanner, Python-layout writer) and DPR's TSV, shared by
        // Tensor, Fetch, Retrieval and FiD. Scans multi-GB files: optimised even in debug.
        .target(name: "Formats", swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        // The 8-bit product's kernels (AVX-512 VNNI / AVX2 / portable, chosen at run time): C,
        // because Swift has no vector intrinsics (Sources/CDot8/Dot8.c says why). Optimised even in debug.
        .target(name: "CDot8", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        // The bfloat16 product's kernels (AVX-512 BF16 / portable twin) for half-precision inference:
        // C for the same reasons (Sources/CBF16/BF16Gemm.c). Optimised even in debug.
        .target(name: "CBF16", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        // A decoding step's cross-attention (scoring and context passes) with AVX-512 (Zen 4), the
        // Swift kernels' twins to the bit (Sources/COverMemory/OverMemory.c says why C). Optimised even in debug.
        .target(name: "COverMemory", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        // The compute threads fidq starts and counts itself (libdispatch waits for ever on a
        // thread the process limit refuses): Tensor's parallel loops, batch tokenisation, the heartbeat.
        .target(name: "Threading", dependencies: ["CSpin"]),
        // Atomic loads, a counter bump and the CPU's pause for ComputePool's spin before it sleeps.
        .target(name: "CSpin"),
        // A prefetch hint for Swift kernels (header-only; Attention.overMemory's scoring loop).
        .target(name: "CPrefetch"),
        // Gives OpenBLAS this CPU's kernels when it does not know the CPU and falls back to SSE3
        // ones (Sources/COpenBLASCore/OpenBLASCore.c says why and how).
        .target(name: "COpenBLASCore"),
        .target(name: "Tensor", dependencies: ["CBLAS", "COpenBLASCore", "CDot8", "CBF16", "COverMemory", "CPrefetch", "Formats", "Threading"], swiftSettings: kernelFlags),
        .target(name: "Tokenizers", dependencies: ["Threading"], swiftSettings: kernelFlags),
        .target(name: "Jobs", dependencies: ["Formats", "Threading", .product(name: "Logging", package: "swift-log")]),
        // Test-only parts of the queue (fault-injecting file system, the test.record kind, crash
        // points). The fidq executable links it too, because the worker process tests start real
        // `fidq worker`s that register these under FIDQ_TEST_KINDS=1; nothing else reaches them.
        .target(name: "JobsTesting", dependencies: ["Jobs"]),
        // SHA-256 blocks on the x86 SHA extensions, chosen at run time (Sources/CSHA256 says why C).
        .target(name: "CSHA256", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),
        .target(
            name: "Fetch",
            dependencies: ["CArchive", "CSHA256", "Formats", "Threading"],
            // Scans multi-GB passage files byte by byte: optimised even in debug, like the kernels.
            swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "TestSupport", dependencies: ["Tensor"], swiftSettings: kernelFlags),
        .target(name: "Models", dependencies: ["Tensor", "Tokenizers"], swiftSettings: kernelFlags),
        .target(name: "Retrieval", dependencies: ["Tensor", "Tokenizers", "Formats"], swiftSettings: kernelFlags),
        // The pipelines and their job kinds. FiD imports Jobs for the checkpoint API and strict
        // params decoding; Jobs itself still imports no ML target.
        .target(
            name: "FiD", dependencies: ["Models", "Tokenizers", "Retrieval", "Formats", "Tensor", "Jobs", "Threading"],
            swiftSettings: kernelFlags),
        .executableTarget(
            name: "fidq",
            dependencies: [
                "Tensor", "Tokenizers", "Jobs", "JobsTesting", "Fetch", "Models", "Retrieval", "FiD",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // Benchmarks (`ops/bench NAME…`), built in release; never run by `ops/test`.
        .executableTarget(
            name: "bench", dependencies: ["Tensor", "Models", "Retrieval", "FiD"], swiftSettings: kernelFlags),
        .executableTarget(name: "tokenize-bench", dependencies: ["Tokenizers"], swiftSettings: kernelFlags),
        .testTarget(
            name: "TensorTests", dependencies: ["Tensor", "TestSupport", "COpenBLASCore"],
            exclude: ["Fixtures"], swiftSettings: testFlags),
        .testTarget(name: "benchTests", dependencies: ["bench"]),
        .testTarget(
            name: "ModelsTests", dependencies: ["Models", "TestSupport"],
            exclude: ["Fixtures"], swiftSettings: testFlags),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "JobsTests", dependencies: ["Jobs", "JobsTesting"]),
        .testTarget(name: "FetchTests", dependencies: ["Fetch", "CArchive"], exclude: ["Fixtures"]),
        .testTarget(name: "FormatsTests", dependencies: ["Formats"]),
        .testTarget(name: "ThreadingTests", dependencies: ["Threading"]),
        .testTarget(
            name: "RetrievalTests", dependencies: ["Retrieval", "TestSupport"], exclude: ["Fixtures"],
            swiftSettings: testFlags),
        .testTarget(
            name: "FiDTests", dependencies: ["FiD", "Jobs", "JobsTesting", "TestSupport"], exclude: ["Fixtures"],
            swiftSettings: testFlags),
    ],
    swiftLanguageModes: [.v5]
)
